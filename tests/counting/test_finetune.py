"""A camera's own fine-tuned output layer: fitted in closed form, written with its SHA-256,
refused when changed, run by the engines, chosen by cross-validation; the Mall site end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec, OnnxRuntimeEngine, spec_for
from crowdsafe.counting.finetuned import LayersRef, is_finetuned, load_layers, save_layers
from crowdsafe.counting.intervals import fit_table
from crowdsafe.counting.tuning import CameraTuning, Candidate, TuningError, load_tuning, save_tuning
from crowdsafe.counting.weights import WeightsError, load_weights
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.evaluation.site import load_frame_points
from crowdsafe.training.camera import FrameSums, cross_validated, fit_layer
from tests.support.counting import MemoCounter, uses

MALL_SITE = Path(__file__).resolve().parents[2] / "benchmarks" / "sites" / "mall.yaml"


def synthetic_sums(n: int, seed: int = 0) -> tuple[FrameSums, np.ndarray]:
    """Frames whose density is exactly a known 1x1 layer of their (non-negative) features."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(0, 0.02, 64)
    true_b = 0.001
    sums = FrameSums()
    for _ in range(n):
        features = rng.gamma(1.0, 1.0, (64, 12, 16)).astype(np.float32)
        density = np.tensordot(true_w, features, axes=1) + true_b
        sums.add(features, density, float(density.sum()))
    return sums, np.concatenate([true_w, [true_b]])


def test_closed_form_refit_recovers_the_layer_and_cross_validates_out_of_block():
    sums, truth = synthetic_sums(30)
    layer = fit_layer(sums, np.arange(30), ridge=0.0)
    fitted = np.concatenate([layer.weight.ravel(), layer.bias])
    assert np.allclose(fitted, truth, atol=1e-4)
    pred, regions = cross_validated(sums, ridge=0.0, folds=5)
    assert np.allclose(pred, sums.people, atol=1e-2)
    assert regions.shape == (30, 16) and np.allclose(regions.sum(axis=1), pred, atol=1e-2)
    # the ridge shrinks: a large one pulls the weights towards zero
    shrunk = fit_layer(sums, np.arange(30), ridge=10.0)
    assert np.abs(shrunk.weight).sum() < np.abs(layer.weight).sum()


def layers_file(tmp_path: Path, factor: float = 2.0) -> LayersRef:
    """The published output layer scaled by ``factor``, as a fine-tuned layers file."""
    weights = load_weights()
    layers = {"output_layer.weight": factor * weights["output_layer.weight"],
              "output_layer.bias": factor * weights["output_layer.bias"]}
    path = tmp_path / "t.layers.npz"
    digest = save_layers(path, layers)
    return LayersRef(str(path), digest, "dense")


def test_layers_file_is_deterministic_and_refused_when_changed(tmp_path: Path, counter):
    ref = layers_file(tmp_path)
    assert save_layers(tmp_path / "again.npz", load_layers(ref)) == ref.sha256
    assert is_finetuned(ref.key) and ref.key == f"dense+{ref.sha256[:12]}"
    assert spec_for(ref.key, EngineSpec(), [ref]).layers == ref
    assert spec_for("sparse", EngineSpec(), [ref]) == EngineSpec(model="sparse")
    with pytest.raises(ValueError, match="no fine-tuned layers"):
        spec_for("dense+000000000000", EngineSpec(), [ref])
    tuning = CameraTuning("mall", "dense", False, 1.0, fit_table("dense", [30.0] * 20, [31.0] * 20),
                          layers=ref, finetune={"ridge": 1e-3})
    save_tuning(tuning, tmp_path / "t.json")
    loaded = load_tuning(tmp_path / "t.json")
    assert loaded.layers == ref and loaded.model_key == ref.key and loaded.finetune["ridge"] == 1e-3
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["weights"]["file"] == "t.layers.npz"  # a name next to the tuning file, not a path
    data_bytes = bytearray(Path(ref.path).read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF  # one weight changed after commissioning
    Path(ref.path).write_bytes(bytes(data_bytes))
    with pytest.raises(TuningError, match="fail verification"):
        load_tuning(tmp_path / "t.json")
    with pytest.raises(WeightsError, match="fail verification"):
        OnnxRuntimeEngine("fp32", model="dense", layers=ref)


def test_an_engine_counts_with_the_cameras_layers(tmp_path: Path, counter, crop_jpeg: Path):
    """A real frame: the output layer doubled doubles the count; the shipped model is untouched."""
    import cv2

    image = cv2.imread(str(crop_jpeg))
    ref = layers_file(tmp_path, 2.0)
    tuned = DensityCounter(OnnxRuntimeEngine("fp32", threads=1, model="dense", layers=ref))
    plain = counter.count(image).count
    assert plain > 1
    assert tuned.count(image).count == pytest.approx(2 * plain, rel=1e-3)
    assert counter.count(image).count == pytest.approx(plain, rel=1e-6)


def test_labels_keyed_by_image_file_name(tmp_path: Path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"b.jpg": {"count": 1, "points": [[1, 2]]},
                                  "a.jpg": {"count": 0, "points": []}}))
    points = load_frame_points(labels, ["a.jpg", "b.jpg", "c.jpg"])
    assert sorted(points) == [0, 1] and points[1].tolist() == [[1.0, 2.0]]
    with pytest.raises(DatasetError, match="not an image folder"):
        load_frame_points(labels)
    with pytest.raises(DatasetError, match="no such image"):
        load_frame_points(labels, ["a.jpg"])


def test_mall_commissioned_from_its_training_frames_then_checked_on_dev_frames(
        tmp_path: Path, counter, shared_data: Path):
    """The real commands, tiny: tune --finetune on 12 training frames (an image folder, labels by
    file name; one pass gives every candidate its counts on all 12), then eval --tuning on two
    dev frames (one engine stands in for the camera's, to save time)."""
    train = shared_data / "crowd-train" / "mall_train"
    if not (train / "labels.json").is_file():
        pytest.skip(f"Mall training frames not found at {train}")
    out = tmp_path / "t.json"
    result = CliRunner().invoke(app, ["tune", str(MALL_SITE), "--camera", "mall", "--source", str(train),
                                      "--labels", str(train / "labels.json"), "--frames", "0:12",
                                      "--max-frames", "10", "--finetune", "--out", str(out)],
                                obj=uses(MemoCounter(counter)))
    assert result.exit_code == 0, result.output
    assert "fine-tuned output layer" in result.output
    tuning = load_tuning(out)
    assert all(0 <= f < 12 for f in tuning.frames)
    assert any(c.finetuned for c in tuning.candidates) and any(not c.finetuned for c in tuning.candidates)
    layers = tmp_path / "t.layers.npz"
    assert layers.is_file() == (tuning.layers is not None)
    def score(c: Candidate) -> float:
        return c.cv_mae + c.cv_game

    best = min((c for c in tuning.candidates if c.finetuned), key=score)
    shipped = min(score(c) for c in tuning.candidates if not c.finetuned)
    assert (tuning.layers is not None) == (score(best) < shipped)  # the same frames, one criterion
    if tuning.layers is not None:  # its interval from its out-of-block totals: no second pass
        assert tuning.frames == list(range(12))
        assert json.loads(out.read_text())["expected"]["frames"] == 12
    evaluated = tmp_path / "e.json"
    checked = CliRunner().invoke(app, ["eval", str(shared_data / "crowd" / "mall"), "--tuning", str(out),
                                       "--limit", "2", "--json", str(evaluated)])
    assert checked.exit_code == 0, checked.output
    data = json.loads(evaluated.read_text())
    mall = data["datasets"]["mall"]
    assert mall["n"] == 2 and mall["coverage"] is not None and data["model"] == tuning.model_key
    assert mall["mae"] < 15  # 12 frames of one camera: a sanity bound, not the benchmark
    # counted in the precision its layer was fitted on (int8 features under OpenVINO), not fp32
    assert data["precision"] == (tuning.commissioned_precision or "fp32")


def test_a_fine_tuned_camera_is_counted_in_its_commissioning_precision_unless_asked(tmp_path: Path):
    from crowdsafe.cli.options import PrecisionChoice, resolve_precision

    ref = layers_file(tmp_path)
    table = fit_table("dense", [30.0] * 20, [31.0] * 20)
    tuned = CameraTuning("mall", "dense", False, 1.0, table, layers=ref,
                         finetune={"ridge": 1e-5, "feature_precision": "int8"})
    save_tuning(tuned, tmp_path / "t.json")
    assert load_tuning(tmp_path / "t.json").commissioned_precision == "int8"
    assert resolve_precision(None, tuned.commissioned_precision)[0] == "int8"
    assert resolve_precision(PrecisionChoice.fp32, "int8")[0] == "fp32"  # --precision overrides
    # no layers (or none recorded): the accuracy commands' fp32 default, as before
    shipped = CameraTuning("c", "dense", False, 1.0, table, finetune={"feature_precision": "int8"})
    assert shipped.commissioned_precision is None
    assert replace(tuned, finetune={"ridge": 1e-5}).commissioned_precision is None
    assert resolve_precision(None, None)[0] == "fp32"


def test_a_bad_source_is_an_error_line(tmp_path: Path):
    result = CliRunner().invoke(app, ["tune", str(MALL_SITE), "--camera", "mall", "--source",
                                      str(tmp_path / "nope"), "--labels", str(MALL_SITE),
                                      "--frames", "0:10", "--out", str(tmp_path / "t.json")])
    assert result.exit_code != 0 and "--source" in result.output


def test_tuning_without_layers_still_reads_as_before(tmp_path: Path):
    tuning = CameraTuning("c", "sparse", True, 1.1, fit_table("sparse", [5.0] * 20, [5.0] * 20),
                          cv_mae=0.5, cv_coverage=0.9)
    save_tuning(tuning, tmp_path / "t.json")
    loaded = load_tuning(tmp_path / "t.json")
    assert loaded.layers is None and loaded.model_key == "sparse"
    assert replace(loaded, source="") == replace(tuning, source="")


def test_site_counters_give_a_fine_tuned_camera_its_own_engine(tmp_path: Path):
    """The runtime (``run``, ``demo``, ``eval-site``) builds the tuned camera's engine with its
    layers; what a Ray replica is given is the same spec (``precision_for``)."""
    from crowdsafe.cli.site import site_geometry
    from crowdsafe.config.site import load_site
    from crowdsafe.runtime.counters import CameraCounters, precision_for

    ref = layers_file(tmp_path)
    tuning = CameraTuning("mall", "dense", False, 1.0, fit_table("dense", [30.0] * 20, [31.0] * 20),
                          layers=ref, finetune={"ridge": 1e-5})
    asked: list[EngineSpec] = []

    class Fake:
        def __init__(self, spec: EngineSpec) -> None:
            asked.append(spec)

    geometry = site_geometry(load_site(MALL_SITE))
    counters = CameraCounters(geometry, EngineSpec(precision="int8"), Fake,  # type: ignore[arg-type]
                              tunings={"mall": tuning}, regions=False)
    assert counters.models == {"mall": ref.key}
    assert asked == [EngineSpec(precision="int8", model="dense", layers=ref)]
    assert precision_for(ref.key, EngineSpec(precision="int8"), (ref,)) == asked[0]
    assert "tuned" in counters.describe()


def test_one_graph_gives_the_dense_features_and_both_models_maps():
    """The commissioning pass's branched graph computes what the separate models do."""
    import onnxruntime as ort

    from crowdsafe.counting.graph import INPUT_NAME, build_branched, build_model
    from crowdsafe.counting.variants import model_weights

    dense, sparse = model_weights("dense"), model_weights("sparse")
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)

    def run(model: object, names: list[str] | None = None) -> list[np.ndarray]:
        session = ort.InferenceSession(model.SerializeToString(),  # type: ignore[attr-defined]
                                       providers=["CPUExecutionProvider"])
        return session.run(names, {INPUT_NAME: image})

    features, maps = run(build_branched(dense, "backend.2", {"features": (dense, "backend.10"),
                                                             "sparse": (sparse, None)}),
                         ["features", "sparse"])
    assert features.shape == (1, 64, 12, 16)
    assert np.allclose(features, run(build_model(dense, stop_after="backend.10"))[0], atol=1e-4)
    assert np.allclose(maps, run(build_model(sparse))[0], atol=1e-5)
    # the dense map is the published output layer on those features
    w, b = dense["output_layer.weight"].reshape(-1), dense["output_layer.bias"][0]
    assert np.allclose(np.tensordot(w, features[0], axes=1) + b, run(build_model(dense))[0][0, 0], atol=1e-4)
    with pytest.raises(ValueError, match="not after"):
        build_branched(dense, "backend.2", {"x": (dense, "backend.0")})


def test_the_interval_of_a_typical_stretch_is_narrower_than_the_pooled_one():
    """Errors in stretches (each block off by its own amount): the pooled quantile spans every
    block's offset, the typical block's only its own spread."""
    from crowdsafe.counting.intervals import coverage
    from crowdsafe.counting.tuning import typical_block_table

    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 40, 500)
    offsets = np.repeat([-0.15, -0.05, 0.0, 0.05, 0.15], 100)  # log-ratio bias per block
    pred = (truth + 1) * np.exp(-(offsets + rng.normal(0, 0.03, 500))) - 1
    pooled = fit_table("dense", pred.tolist(), truth.tolist(), 0.9, min_per_bin=501)
    typical = typical_block_table("dense", pred, truth, 5)
    assert typical.hi[0] - typical.lo[0] < pooled.hi[0] - pooled.lo[0]
    middle = slice(200, 300)  # the block with no offset: the typical interval covers about 90 %
    assert 0.8 <= coverage(typical, pred[middle].tolist(), truth[middle].tolist()) <= 0.98
    assert coverage(pooled, pred[middle].tolist(), truth[middle].tolist()) == 1.0
