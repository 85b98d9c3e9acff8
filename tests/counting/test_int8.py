"""int8 plan and calibration: the shipped plan is complete and counts like fp32 on a crowd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crowdsafe.counting import calibrate as cal
from crowdsafe.counting import engines
from crowdsafe.counting.engines import (
    EngineUnavailable,
    OnnxRuntimeEngine,
    OpenVinoEngine,
    load_int8_plan,
)
from crowdsafe.counting.graph import conv_names
from crowdsafe.counting.weights import WeightsError, load_weights

DATA = Path(__file__).parents[2].parent / "shared" / "data"
TRAIN = DATA / "crowd-train"
SHIPPED = Path(__file__).parents[2] / "src" / "crowdsafe" / "counting" / "int8_plan.json"
SHIPPED_SPARSE = SHIPPED.with_name("int8_plan_sparse.json")


def _weights_or_skip() -> None:
    try:
        load_weights()
    except WeightsError as exc:
        pytest.skip(f"CSRNet weights not cached: {exc}")


def test_plan_covers_every_conv():
    plan = load_int8_plan()
    assert set(plan.activation_scales) == set(conv_names())
    assert all(s > 0 and np.isfinite(s) for s in plan.activation_scales.values())
    assert plan.keep_float <= set(conv_names())
    # the signed, 3-channel first conv cannot use the unsigned activation grid
    assert "frontend.0" in plan.keep_float
    assert sum(plan.quantised(n) for n in conv_names()) >= 10


def test_shipped_plan_records_train_only_calibration():
    meta = json.loads(SHIPPED.read_text())["calibration"]
    assert all(s.endswith("_train") for s in meta["sources"])


def test_sparse_plan_is_its_own_train_only_table():
    dense, sparse = load_int8_plan("dense"), load_int8_plan("sparse")
    assert load_int8_plan() == dense  # the default stays the dense table
    assert set(sparse.activation_scales) == set(conv_names())
    assert all(s > 0 and np.isfinite(s) for s in sparse.activation_scales.values())
    assert "frontend.0" in sparse.keep_float
    assert sum(sparse.quantised(n) for n in conv_names()) >= 10
    # calibrated through the sparse graph: its fine-tuned backend has its own ranges
    assert sparse.activation_scales["backend.8"] != dense.activation_scales["backend.8"]
    meta = json.loads(SHIPPED_SPARSE.read_text())["calibration"]
    assert meta["model"] == "sparse"
    assert meta["sources"] and all(s.endswith("_train") for s in meta["sources"])


def test_missing_table_names_the_command_to_run(monkeypatch):
    monkeypatch.setitem(engines.INT8_PLAN_RESOURCES, "sparse", "no_such_plan.json")
    with pytest.raises(EngineUnavailable, match="crowdsafe models calibrate --model sparse"):
        load_int8_plan("sparse")


def _crowd_crop() -> np.ndarray:
    """A 256x256 crop of a dense ShanghaiTech TRAIN image (never the dev/test images)."""
    path = TRAIN / "shanghaitech_a_train" / "IMG_1.jpg"
    if not path.is_file():
        pytest.skip(f"crowd train data not present at {path}")
    batch = cal.load_batch(path, None)
    return np.ascontiguousarray(batch[:, :, 416:672, 640:896])  # ~400 annotated heads


@pytest.mark.parametrize("engine_cls", [OpenVinoEngine, OnnxRuntimeEngine])
def test_int8_counts_close_to_fp32(engine_cls):
    _weights_or_skip()
    batch = _crowd_crop()
    kwargs = {"device": "cpu"} if engine_cls is OnnxRuntimeEngine else {}
    fp32 = float(engine_cls("fp32", **kwargs).infer(batch).sum())
    int8 = float(engine_cls("int8", **kwargs).infer(batch).sum())
    assert fp32 > 100  # a real crowd, so a relative tolerance means something
    assert abs(int8 - fp32) / fp32 < 0.04


def _street_crop() -> np.ndarray:
    """A 256x512 crop of a ShanghaiTech B TRAIN street scene (the sparse model's kind of view)."""
    path = TRAIN / "shanghaitech_b_train" / "IMG_1.jpg"
    if not path.is_file():
        pytest.skip(f"crowd train data not present at {path}")
    batch = cal.load_batch(path, None)
    return np.ascontiguousarray(batch[:, :, :256, 256:768])  # the far, packed end of the street


@pytest.mark.parametrize("engine_cls", [OpenVinoEngine, OnnxRuntimeEngine])
def test_sparse_int8_counts_close_to_sparse_fp32(engine_cls):
    _weights_or_skip()
    batch = _street_crop()
    kwargs = {"device": "cpu"} if engine_cls is OnnxRuntimeEngine else {}
    fp32 = float(engine_cls("fp32", model="sparse", **kwargs).infer(batch).sum())
    int8_engine = engine_cls("int8", model="sparse", **kwargs)
    int8 = float(int8_engine.infer(batch).sum())
    assert fp32 > 50  # a real crowd, so a relative tolerance means something
    assert abs(int8 - fp32) / fp32 < 0.04


def test_histogram_thresholds():
    h = cal.ActivationHistogram()
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(5000), rng.exponential(1.0, 100_000)]).astype(np.float32)
    h.update(values[:50_000])
    h.update(values[50_000:] * 1.0)
    assert h.threshold("max") == pytest.approx(values.max())
    assert h.threshold("p99.9") == pytest.approx(np.percentile(values, 99.9), rel=0.02)
    assert 0 < h.threshold("mse") <= h.threshold("max")
    with pytest.raises(ValueError):
        h.threshold("nonsense")


def test_histogram_widens_without_losing_counts():
    h = cal.ActivationHistogram()
    h.update(np.array([0.5, 1.0], np.float32))
    h.update(np.array([7.0, -3.0], np.float32))
    assert h.counts.sum() == 4
    assert h.maximum == 7.0


def test_select_images_spreads_and_validation_is_disjoint(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for i in range(1, 21):
            (tmp_path / d / f"IMG_{i}.jpg").write_bytes(b"")
    dirs = [tmp_path / "a", tmp_path / "b"]
    calib = cal.select_images(dirs, 6)
    val = cal.select_images(dirs, 6, offset=0.5)
    assert len(calib) == 6 and {p.parent.name for p in calib} == {"a", "b"}
    assert not set(calib) & set(val)


def test_calibrate_command_writes_valid_plan(tmp_path):
    _weights_or_skip()
    import cv2
    from typer.testing import CliRunner

    from crowdsafe.cli.models import app

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        cv2.imwrite(str(images / f"IMG_{i}.png"), rng.integers(0, 255, (64, 96, 3), np.uint8))
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["calibrate", str(images), "--out", str(out),
                                      "--images", "2", "--max-side", "96"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["activation_scales"]) == set(conv_names())
    assert data["calibration"]["images"] == 2
    assert SHIPPED.read_text() != out.read_text()


def test_calibrate_command_calibrates_the_sparse_model(tmp_path):
    _weights_or_skip()
    import cv2
    from typer.testing import CliRunner

    from crowdsafe.cli.models import SHIPPED_PLANS, app

    assert SHIPPED_PLANS["sparse"] == SHIPPED_SPARSE and SHIPPED_PLANS["dense"] == SHIPPED
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(2)
    cv2.imwrite(str(images / "IMG_1.png"), rng.integers(0, 255, (64, 96, 3), np.uint8))
    dense_out, sparse_out = tmp_path / "dense.json", tmp_path / "sparse.json"
    for model, out in (("dense", dense_out), ("sparse", sparse_out)):
        result = CliRunner().invoke(app, ["calibrate", str(images), "--out", str(out),
                                          "--images", "1", "--max-side", "96", "--model", model])
        assert result.exit_code == 0, result.output
    dense, sparse = json.loads(dense_out.read_text()), json.loads(sparse_out.read_text())
    assert sparse["calibration"]["model"] == "sparse"
    # same image, same frozen frontend: the frontend scales agree, the fine-tuned backend's differ
    assert sparse["activation_scales"]["frontend.2"] == dense["activation_scales"]["frontend.2"]
    assert sparse["activation_scales"]["output_layer"] != dense["activation_scales"]["output_layer"]
    result = CliRunner().invoke(app, ["calibrate", str(images), "--model", "nonsense"])
    assert result.exit_code != 0
