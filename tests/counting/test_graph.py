"""The ONNX graph built from the weights computes exactly CSRNet (checked against NumPy)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import shape_inference

from crowdsafe.counting.graph import OUTPUT_NAME, build_model
from crowdsafe.counting.weights import load_weights
from tests.support.counting import video_crop
from tests.support.reference_csrnet import density as reference_density


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return load_weights()


@pytest.fixture(scope="module")
def session(weights):
    model = build_model(weights)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])




@pytest.mark.parametrize(("frame", "y", "x", "h", "w"), [
    (100, 200, 250, 96, 128),   # people mid-frame
    (400, 300, 100, 88, 104),   # sizes not multiples of 8: floor behaviour of the pools
])
def test_graph_matches_numpy_reference(session, weights, frame, y, x, h, w):
    rgb = video_crop(frame, y, x, h, w)
    ref = reference_density(rgb, weights)
    batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    got = session.run(None, {"image": batch})[0][0, 0]
    assert got.shape == ref.shape == (h // 8, w // 8)
    assert np.abs(ref).max() > 1e-4, "crop too empty to test anything"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert got.sum() == pytest.approx(ref.sum(), rel=1e-4)


def test_graph_has_dynamic_batch_and_size(weights):
    model = build_model(weights)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    inferred = shape_inference.infer_shapes(model)
    assert inferred.graph.output[0].name == OUTPUT_NAME


def test_batch_of_two_equals_two_singles(session):
    a = video_crop(50, 150, 300, 64, 64)
    b = video_crop(600, 250, 400, 64, 64)
    batch = np.stack([a, b]).transpose(0, 3, 1, 2).astype(np.float32)
    both = session.run(None, {"image": batch})[0]
    for i, single in enumerate((a, b)):
        one = session.run(None, {"image": batch[i:i + 1]})[0]
        np.testing.assert_allclose(both[i], one[0], rtol=1e-5, atol=1e-6)
        assert single.shape == (64, 64, 3)
