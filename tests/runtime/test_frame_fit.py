"""Frames at another resolution than the calibration: frame and flow pair resized alike, one warning."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FrameFit

GEOMETRY = SimpleNamespace(cameras={"cam": SimpleNamespace(ground_map=SimpleNamespace(image_size=(64, 48)))})


@pytest.mark.parametrize(("size", "resized"), [((64, 48), False), ((128, 96), True), ((32, 24), True)])
def test_frame_and_pair_come_at_the_calibrations_size(size: tuple[int, int], resized: bool, caplog):
    fit = FrameFit(GEOMETRY)  # type: ignore[arg-type]
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    sample = Sample("cam", 1.0, frame, pair=frame.copy(), pair_dt=0.1)
    with caplog.at_level(logging.WARNING, logger="crowdsafe.runtime.pipeline"):
        out = fit.sample(fit.sample(sample))  # fitting twice changes nothing more
    assert out.image.shape == out.pair.shape == (48, 64, 3)
    assert (out is sample) is not resized
    assert len([r for r in caplog.records if "resizing" in r.message]) == int(resized)  # once per camera


def test_a_sample_without_pair_keeps_none():
    out = FrameFit(GEOMETRY).sample(Sample("cam", 1.0, np.zeros((96, 128, 3), np.uint8)))  # type: ignore[arg-type]
    assert out.image.shape == (48, 64, 3) and out.pair is None
