"""Engines agree with each other, say what precision they run, and recover a corrupted cache."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsafe.counting import engines as eng
from crowdsafe.counting import weights as w
from tests.support.counting import video_batch


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    """A fresh model cache, with the verified weights still found where they are."""
    monkeypatch.setenv(w.ENV_WEIGHTS, str(w.weights_path()))
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path))
    return tmp_path




def test_openvino_and_onnxruntime_agree_in_fp32():
    batch = video_batch()
    ov = eng.create_engine(eng.EngineSpec("openvino", "fp32")).infer(batch)
    ort = eng.create_engine(eng.EngineSpec("onnxruntime", "fp32")).infer(batch)
    assert ov.shape == ort.shape == (1, 1, 16, 20)
    assert ort.sum() > 0.5, "crop should contain people"
    np.testing.assert_allclose(ov, ort, rtol=1e-3, atol=1e-3 * np.abs(ort).max())


def test_openvino_holds_at_most_shapes_cached_compiled_models_least_recent_out():
    """Each compiled shape is ~100 MB of native memory: the cache must stay bounded."""
    engine = eng.OpenVinoEngine("fp32", shapes_cached=2)
    a, b, c = (1, 3, 64, 64), (1, 3, 64, 96), (1, 3, 96, 64)
    for shape in (a, b, a, c):  # a is used again before c arrives, so b is the least recent
        engine.infer(np.zeros(shape, np.float32))
    assert engine.compiled_shapes == (a, c)


def test_openvino_runs_the_precision_it_was_asked_for():
    engine = eng.OpenVinoEngine("fp32")
    engine.infer(video_batch())
    assert engine.actual_precision() == "fp32"


@pytest.mark.skipif(eng.cpu_has_bf16(), reason="this CPU has bf16; the refusal path cannot happen")
def test_bf16_is_refused_clearly_on_a_cpu_without_it():
    with pytest.raises(eng.EngineUnavailable, match="AVX-512-BF16 or AMX"):
        eng.OpenVinoEngine("bf16")
    with pytest.raises(eng.EngineUnavailable, match="bf16"):
        eng.create_engine(eng.EngineSpec("auto", "bf16"))


def test_corrupted_model_cache_is_rebuilt(private_cache):
    path = eng.model_path("fp32")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a crash mid-write, or disk damage
    assert eng.model_path("fp32") == path
    assert path.read_bytes() == good
    out = eng.OnnxRuntimeEngine("fp32").infer(video_batch())
    assert out.sum() > 0.5


def test_cuda_request_without_gpu_build_is_explained():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here; the refusal path cannot happen")
    with pytest.raises(eng.EngineUnavailable, match="onnxruntime-gpu"):
        eng.create_engine(eng.EngineSpec("onnxruntime", "fp32", device="cuda"))
