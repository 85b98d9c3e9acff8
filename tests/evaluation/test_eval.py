"""Metrics by hand, dataset loading and its errors, and ``crowdsafe eval`` on real Mall frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.evaluation import metrics as m
from crowdsafe.evaluation.dataset import DatasetError, find_datasets, load_dataset
from tests.support.counting import uses

runner = CliRunner()
METRIC_KEYS = {"n", "mae", "rmse", "bias", "corr", "rel_err", "sec_per_image", "coverage"}

# --- metrics (hand-computed) ---------------------------------------------------------------

PRED = [10.0, 20.0, 30.0]
TRUTH = [12.0, 18.0, 33.0]  # errors -2, +2, -3


def test_metrics_by_hand() -> None:
    assert m.mae(PRED, TRUTH) == pytest.approx(7 / 3)
    assert m.rmse(PRED, TRUTH) == pytest.approx(math.sqrt(17 / 3))
    assert m.bias(PRED, TRUTH) == pytest.approx(-1.0)
    assert m.relative_error(PRED, TRUTH) == pytest.approx((2 / 12 + 2 / 18 + 3 / 33) / 3)
    # pred - mean = -10, 0, 10; truth - mean = -9, -3, 12; sum of products 210.
    assert m.pearson(PRED, TRUTH) == pytest.approx(210 / math.sqrt(200 * 234))
    assert m.sec_per_image(6.0, 3) == 2.0


def test_compute_metrics_bundle() -> None:
    result = m.compute_metrics(PRED, TRUTH, seconds=1.5)
    assert result.n == 3 and result.sec_per_image == pytest.approx(0.5)
    assert set(result.as_dict()) == METRIC_KEYS
    assert m.compute_metrics(PRED, TRUTH).sec_per_image is None


def test_perfect_and_constant_predictions() -> None:
    assert m.mae(TRUTH, TRUTH) == 0 and m.pearson(TRUTH, TRUTH) == pytest.approx(1.0)
    assert m.pearson([5.0, 5.0, 5.0], TRUTH) is None  # constant side: undefined
    assert m.pearson([1.0], [2.0]) is None  # one image: undefined
    assert m.pearson([3.0, 1.0], [1.0, 3.0]) == pytest.approx(-1.0)


def test_relative_error_ignores_empty_scenes() -> None:
    assert m.relative_error([1.0, 11.0], [0.0, 10.0]) == pytest.approx(0.1)
    assert m.relative_error([1.0, 2.0], [0.0, 0.0]) is None


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="no images"):
        m.mae([], [])
    with pytest.raises(ValueError, match="2 predictions for 3"):
        m.rmse([1.0, 2.0], [1.0, 2.0, 3.0])


# --- datasets ----------------------------------------------------------------------------


def test_load_real_dataset(crowd_data: Path) -> None:
    mall = load_dataset(crowd_data / "mall")
    assert mall.name == "mall" and len(mall.images) == 100
    assert mall.images[0].name == "seq_000801.jpg" and mall.images[0].count == 31
    assert all(26 <= image.count <= 41 for image in mall.images)


def test_parent_folder_finds_all_datasets(crowd_data: Path) -> None:
    names = [d.name for d in find_datasets(crowd_data)]
    assert names == ["mall", "shanghaitech_a", "shanghaitech_b", "ucf_cc_50"]


def test_natural_order_of_images(crowd_data: Path) -> None:
    names = [image.name for image in load_dataset(crowd_data / "shanghaitech_b").images]
    assert names[:3] == ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"] and names[-1] == "IMG_20.jpg"


@pytest.fixture
def tiny_dataset(tmp_path: Path, mall_jpeg: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(mall_jpeg.read_bytes())
    (folder / "labels.json").write_text(json.dumps({"a.jpg": {"count": 31, "points": []}}))
    return folder


@pytest.mark.parametrize(("labels", "message"), [
    (None, "no labels.json here"),
    ("{not json", "invalid JSON at line 1"),
    ("[]", "expected a non-empty object"),
    ('{"a.jpg": {"count": -1}}', "has count -1"),
    ('{"a.jpg": {"count": "many"}}', "has count 'many'"),
    ('{"a.jpg": {"people": 3}}', "has no \"count\""),
    ('{"a.jpg": {"count": 3}, "gone.jpg": {"count": 4}}', "1 labelled image(s) missing: gone.jpg"),
])
def test_dataset_errors(tiny_dataset: Path, labels: str | None, message: str) -> None:
    if labels is None:
        (tiny_dataset / "labels.json").unlink()
    else:
        (tiny_dataset / "labels.json").write_text(labels)
    with pytest.raises(DatasetError) as info:
        find_datasets(tiny_dataset)
    assert message in str(info.value)


def test_count_from_points_when_count_is_absent(tiny_dataset: Path) -> None:
    (tiny_dataset / "labels.json").write_text('{"a.jpg": {"points": [[1, 2], [3, 4]]}}')
    assert load_dataset(tiny_dataset).images[0].count == 2


# --- crowdsafe eval ----------------------------------------------------------------------


def test_eval_mall_subset_end_to_end(tmp_path: Path, crowd_data: Path,
                                     shared_counter: DensityCounter) -> None:
    """2 real frames through the command: JSON shape exact, MAE re-derived from our counts.

    Uses the session's fp32 engine (test_count_cli covers a command building its own).
    """
    counter = shared_counter
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(crowd_data / "mall"), "--limit", "2",
                                 "--json", str(out), "--precision", "fp32"], obj=uses(counter))
    assert result.exit_code == 0, result.output
    assert "mall" in result.stdout and "MAE" in result.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"datasets", "engine", "precision", "model"}
    assert data["model"] == "dense"
    assert data["precision"] == "fp32" and data["engine"] == counter.engine.name
    assert set(data["datasets"]) == {"mall"}
    scores = data["datasets"]["mall"]
    assert set(scores) == METRIC_KEYS | {"dense_share"} and scores["n"] == 2
    assert scores["dense_share"] == 1.0
    labels = json.loads((crowd_data / "mall" / "labels.json").read_text())
    names = ["seq_000801.jpg", "seq_000802.jpg"]  # first two in natural order
    truth = [labels[n]["count"] for n in names]
    pred = [counter.count(cv2.imread(str(crowd_data / "mall" / n))).count for n in names]
    assert scores["mae"] == pytest.approx(sum(abs(p - t) for p, t in zip(pred, truth,
                                                                        strict=True)) / 2,
                                          abs=1e-3)
    assert scores["bias"] == pytest.approx(sum(p - t for p, t in zip(pred, truth,
                                                                     strict=True)) / 2, abs=1e-3)
    assert scores["sec_per_image"] > 0
    assert scores["mae"] < 10  # Mall frames hold 26-41 people; a sane model is close


def test_eval_parent_folder_with_limit(crowd_data: Path, tmp_path: Path,
                                       shared_counter: DensityCounter) -> None:
    """A parent folder evaluates every sub-dataset (1 small image each keeps this fast)."""
    parent = tmp_path / "sets"
    for name in ("mall", "other"):
        folder = parent / name
        folder.mkdir(parents=True)
        small = cv2.imread(str(crowd_data / "mall" / "seq_000801.jpg"))[:128, :128]
        cv2.imwrite(str(folder / "x.png"), small)
        (folder / "labels.json").write_text('{"x.png": {"count": 5}}')
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(parent), "--json", str(out)], obj=uses(shared_counter))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data["datasets"]) == ["mall", "other"]
    assert data["datasets"]["mall"]["corr"] is None  # one image: correlation undefined
    assert data["datasets"]["mall"]["mae"] == pytest.approx(data["datasets"]["other"]["mae"])


@pytest.mark.parametrize("case", ["missing", "no_labels", "bad_labels"])
def test_eval_bad_input_is_one_line(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "data"
    if case != "missing":
        folder.mkdir()
    if case == "bad_labels":
        (folder / "labels.json").write_text("{oops")
    result = runner.invoke(app, ["eval", str(folder)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("error:")
    assert {"missing": "no such folder", "no_labels": "no labels.json",
            "bad_labels": "invalid JSON"}[case] in message
