"""A gate reading when samples are dropped: the actual interval multiplies, the band keeps its depth.

A loaded runner drops samples, so the time since a camera's last counted sample grows past its
configured period. The band a reading averages over is never deeper than a walk of the configured
period (deeper, it would reach metres from the gate, out of view and among people turning
away), and the reading covers the actual interval: the same scene 3 s after the last sample
reads three times what it reads 1 s after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityResult, EveryCamera
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


def test_a_dropped_sample_lengthens_the_period_not_the_band():
    geometry = build_site_geometry(load_site(DEMO_SITE), {"view001": (768, 576)})
    gm = geometry.cameras["view001"].ground_map
    rng = np.random.default_rng(4)
    density = rng.uniform(0.0, 0.05, gm.shape).astype(np.float32)

    class Counter:
        def count(self, image_bgr: np.ndarray) -> DensityResult:
            return DensityResult(density=density, image_height=576, image_width=768, cell=gm.cell,
                                 model="sparse")

    boxes = []

    def flow(a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        boxes.append(a.shape[:2])  # the part of the frame the lines read, at flow resolution
        return np.dstack([np.full(a.shape[:2], -40.0), np.full(a.shape[:2], 10.0)]).astype(np.float32)

    pipe = FramePipeline(geometry, EveryCamera(Counter()), tunings={}, flow=flow)
    assert pipe.every["view001"] == 1.0
    frame = np.zeros((576, 768, 3), np.uint8)
    rows = {}
    for ts in (100.0, 101.0, 102.0, 105.0, 106.0):  # the samples at 103 and 104 s were dropped
        out = pipe.process(Sample("view001", ts=ts, image=frame, pair=frame, pair_dt=0.1))
        (rows[ts],) = out.line_rows
    assert rows[105.0]["period_s"] == pytest.approx(3.0) and rows[106.0]["period_s"] == pytest.approx(1.0)
    assert len(set(boxes)) == 1  # one band, one flow box, whatever the interval
    one, three = rows[102.0], rows[105.0]
    assert one["in_count"] + one["out_count"] > 0.01
    assert three["in_count"] == pytest.approx(3 * one["in_count"], rel=1e-9)
    assert three["out_count"] == pytest.approx(3 * one["out_count"], rel=1e-9)
    assert three["flow_pmm"] == pytest.approx(one["flow_pmm"], rel=1e-9)  # the same flow per minute


def test_shorter_intervals_read_bands_of_their_own_depth_and_the_kept_bands_stay_bounded():
    """Each depth's band is worked out once and kept, the least recently read going first: a
    camera whose intervals wander never grows the measuring step's memory, and every reading is
    what the band worked out afresh gives."""
    from crowdsafe.measure.flow import band_crossings, band_half_width_m
    from crowdsafe.runtime.pipeline import MAX_GATE_BANDS

    geometry = build_site_geometry(load_site(DEMO_SITE), {"view001": (768, 576)})
    gm = geometry.cameras["view001"].ground_map
    density = np.random.default_rng(6).uniform(0.0, 0.05, gm.shape).astype(np.float32)

    class Counter:
        def count(self, image_bgr: np.ndarray) -> DensityResult:
            return DensityResult(density=density, image_height=576, image_width=768, cell=gm.cell,
                                 model="sparse")

    def flow(a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        return np.dstack([np.full(a.shape[:2], -40.0), np.full(a.shape[:2], 10.0)]).astype(np.float32)

    pipe = FramePipeline(geometry, EveryCamera(Counter()), tunings={}, flow=flow)
    [plan] = pipe.lines.values()
    frame = np.zeros((576, 768, 3), np.uint8)
    ts = 100.0
    pipe.process(Sample("view001", ts=ts, image=frame, pair=frame, pair_dt=0.1))
    velocity = np.zeros((576, 768, 2), np.float32)
    x0, y0, x1, y1 = pipe._flow_box("view001", [plan], band_half_width_m(1.0), pipe._body("view001"))
    velocity[y0:y1, x0:x1] = flow(frame[y0:y1, x0:x1], frame, 0.1)
    for k in range(MAX_GATE_BANDS + 8):  # intervals of 0.50, 0.51, ... s: a new depth each
        period = 0.5 + 0.01 * k
        ts += period
        (row,) = pipe.process(Sample("view001", ts=ts, image=frame, pair=frame, pair_dt=0.1)).line_rows
        want = band_crossings(density, gm.cell, velocity, gm.ground_to_image, *plan.passage, plan.in_normal,
                              period, band_half_width_m(period), body=pipe._body("view001"))
        assert row["in_count"] == pytest.approx(want.in_count, rel=1e-9)
        assert row["out_count"] == pytest.approx(want.out_count, rel=1e-9)
        assert len(pipe._gate_bands) <= MAX_GATE_BANDS
