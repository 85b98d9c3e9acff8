"""Without the [openvino] extra, crowdsafe still counts: ``auto`` falls back to ONNX Runtime.

The core install leaves OpenVINO out (about 180 MB); this is the path such an install takes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from crowdsafe.counting import engines as eng
from tests.support.counting import video_batch


@pytest.fixture()
def no_openvino(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object):
        return None if name == "openvino" or name.startswith("openvino.") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_auto_picks_the_engine_measured_fastest_for_the_precision():
    assert eng.create_engine(eng.EngineSpec("auto", "fp32")).name == "onnxruntime"
    assert eng.create_engine(eng.EngineSpec("auto", "int8")).name == "openvino"


def test_auto_engine_without_openvino_is_onnxruntime_and_counts(no_openvino):
    engine = eng.create_engine(eng.EngineSpec("auto", "int8"))
    assert engine.name == "onnxruntime"
    density = engine.infer(video_batch())
    assert density.shape == (1, 1, 16, 20)
    assert float(np.sum(density)) > 0.5


def test_asking_for_openvino_without_it_says_what_to_install(no_openvino):
    with pytest.raises(eng.EngineUnavailable, match="pip install"):
        eng.create_engine(eng.EngineSpec("openvino", "fp32"))
