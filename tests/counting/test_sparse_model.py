"""The sparse-scene model: shipped layers verified, model choice, intervals, eval --model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting import variants
from crowdsafe.counting.choice import (
    DENSE_ABOVE_PER_MPX,
    SPARSE_MIN_PERSON_PX,
    AutoCounter,
    choose_from_person_px,
    is_dense_scene,
)
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec, EngineUnavailable, create_engine, model_path
from crowdsafe.counting.intervals import coverage, fit_table, load_tables
from crowdsafe.counting.weights import WeightsError, load_weights
from crowdsafe.evaluation.metrics import compute_metrics, interval_coverage
from tests.support.counting import uses

runner = CliRunner()


@pytest.fixture(scope="module")
def sparse_counter() -> DensityCounter:
    try:
        return DensityCounter(create_engine(EngineSpec(model="sparse")))
    except (WeightsError, EngineUnavailable) as exc:
        pytest.skip(f"counting model unavailable ({exc}); run `crowdsafe models fetch`")


# --- shipped layers ----------------------------------------------------------------------


def test_shipped_sparse_layers_verify_and_fit_csrnet() -> None:
    layers = variants.load_sparse_layers()
    base = load_weights()
    assert layers, "no layers shipped"
    assert {k.split(".")[0] for k in layers} <= {"backend", "output_layer"}
    assert "output_layer.weight" in layers
    merged = variants.merge_layers(base, layers)
    changed = [k for k in layers if not np.array_equal(merged[k], base[k])]
    assert changed == list(layers)  # every shipped layer really differs from the published one
    assert variants.sparse_path().stat().st_size < 20_000_000


def test_tampered_sparse_layers_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "sparse_b.npz"
    shutil.copyfile(variants.sparse_path(), bad)
    with bad.open("r+b") as fh:
        fh.seek(bad.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(bad.stat().st_size // 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(WeightsError, match="tampered"):
        variants.load_sparse_layers(bad)
    with pytest.raises(WeightsError, match="not found"):
        variants.load_sparse_layers(tmp_path / "missing.npz")


def test_layer_of_wrong_shape_is_refused() -> None:
    base = load_weights()
    with pytest.raises(WeightsError, match="does not fit"):
        variants.merge_layers(base, {"output_layer.weight": np.zeros((1, 32, 1, 1), np.float32)})


def test_sparse_graph_is_cached_apart_from_dense() -> None:
    assert model_path("fp32", model="sparse") != model_path("fp32", model="dense")
    # each model's int8 graph is built from its own table and cached under its own name
    sparse_int8 = model_path("int8", model="sparse")
    assert sparse_int8 != model_path("int8", model="dense")
    assert sparse_int8 != model_path("fp32", model="sparse")


def test_sparse_model_counts_a_street_scene_closer(crowd_data: Path, sparse_counter: DensityCounter,
                                                   counter: DensityCounter) -> None:
    """One real ShanghaiTech B test image: the dense model over-counts it, the sparse one less."""
    labels = json.loads((crowd_data / "shanghaitech_b" / "labels.json").read_text())
    name = "IMG_1.jpg"
    image = cv2.imread(str(crowd_data / "shanghaitech_b" / name))
    truth = labels[name]["count"]
    sparse = sparse_counter.count(image)
    dense = counter.count(image)
    assert sparse.model == "sparse" and dense.model == "dense"
    assert abs(sparse.count - truth) < abs(dense.count - truth)
    assert sparse.interval is not None and sparse.interval[0] <= sparse.count <= sparse.interval[1]


# --- model choice ------------------------------------------------------------------------


def test_choice_from_person_height() -> None:
    big = np.full((10, 10), SPARSE_MIN_PERSON_PX + 1.0)
    small = np.full((10, 10), SPARSE_MIN_PERSON_PX - 1.0)
    assert choose_from_person_px(big) == "sparse"
    assert choose_from_person_px(small) == "dense"
    mixed = np.where(np.arange(100).reshape(10, 10) < 60, np.nan, big)  # unknown cells ignored
    assert choose_from_person_px(mixed) == "sparse"
    with pytest.raises(ValueError, match="no person height"):
        choose_from_person_px(np.full((3, 3), np.nan))


def test_scene_test_threshold() -> None:
    assert not is_dense_scene(DENSE_ABOVE_PER_MPX * 0.99, 1000, 1000)
    assert is_dense_scene(DENSE_ABOVE_PER_MPX * 1.01, 1000, 1000)
    assert is_dense_scene(DENSE_ABOVE_PER_MPX * 0.31, 500, 600)  # on 0.3 MP: 1.03x the threshold


def test_auto_counter_switches_on_the_scene_test(mall_jpeg: Path, sparse_counter: DensityCounter,
                                                 counter: DensityCounter) -> None:
    image = cv2.imread(str(mall_jpeg))
    built: list[str] = []

    def factory(c: DensityCounter, name: str):
        return lambda: built.append(name) or c

    auto = AutoCounter(factory(sparse_counter, "sparse"), factory(counter, "dense"))
    result = auto.count(image)
    assert result.model == "sparse" and built == ["sparse"]  # dense engine never started
    always_dense = AutoCounter(factory(sparse_counter, "sparse"), factory(counter, "dense"),
                               threshold=0.0)
    switched = always_dense.count(image)
    assert switched.model == "dense"
    assert switched.count == pytest.approx(counter.count(image).count)


# --- intervals ---------------------------------------------------------------------------


def test_interval_table_covers_at_nominal_level_on_fresh_draws() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(5, 500, 4000)
    pred = truth * np.exp(rng.normal(0.1, 0.2, truth.size))  # biased, multiplicative error
    table = fit_table("x", list(pred[:200]), list(truth[:200]), level=0.9)
    assert len(table.upper_edges) == 200 // 15 and math.isinf(table.upper_edges[-1])
    fresh = coverage(table, list(pred[200:]), list(truth[200:]))
    assert 0.85 <= fresh <= 0.96
    lo, hi = table.interval(100.0)
    assert lo < 100.0 < hi  # a +10 % biased model: the interval leans below the count


def test_interval_coverage_metric_by_hand() -> None:
    intervals = [(0.0, 10.0), (5.0, 6.0), None, (1.0, 2.0)]
    assert interval_coverage(intervals, [3.0, 7.0, 1.0, 2.0]) == pytest.approx(2 / 3)
    assert interval_coverage([None, None], [1.0, 2.0]) is None
    metrics = compute_metrics([1.0, 2.0], [1.0, 3.0], intervals=[(0.0, 2.0), (0.0, 2.0)])
    assert metrics.coverage == 0.5


def test_shipped_interval_tables() -> None:
    tables = load_tables()
    assert set(tables) == {"dense", "sparse"}
    for table in tables.values():
        assert table.level == 0.9
        lo, hi = table.interval(50.0)
        assert 0 <= lo < hi


# --- eval --model ------------------------------------------------------------------------


def test_eval_with_sparse_and_auto_model(tmp_path: Path, crowd_data: Path) -> None:
    for model in ("sparse", "auto"):
        out = tmp_path / f"{model}.json"
        result = runner.invoke(app, ["eval", str(crowd_data / "mall"), "--limit", "2",
                                     "--model", model, "--json", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["model"] == model
        scores = data["datasets"]["mall"]
        assert scores["n"] == 2 and scores["coverage"] is not None
        assert scores["dense_share"] == 0.0  # Mall is far below the dense-scene threshold


def test_eval_rejects_unknown_model(crowd_data: Path) -> None:
    result = runner.invoke(app, ["eval", str(crowd_data / "mall"), "--model", "huge"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_eval_scores_a_video_against_its_frame_counts(tmp_path: Path,
                                                      shared_counter: DensityCounter) -> None:
    from crowdsafe.cli.demo import ground_truth, sample_video

    out = tmp_path / "video.json"
    result = runner.invoke(app, ["eval", str(sample_video()), "--every", "20s", "--json", str(out)],
                           obj=uses(shared_counter))
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())["datasets"]["vtest"]
    assert scores["n"] == 4  # frames 0, 200, 400, 600 of the 79.5 s video at 10 fps
    truth = ground_truth()
    video = cv2.VideoCapture(str(sample_video()))
    pred = []
    for index in range(601):
        ok, frame = video.read()
        assert ok
        if index % 200 == 0:
            pred.append(shared_counter.count(frame).count)
    video.release()
    expected = sum(abs(p - truth[i]) for p, i in zip(pred, (0, 200, 400, 600), strict=True)) / 4
    assert scores["mae"] == pytest.approx(expected, abs=1e-3)
