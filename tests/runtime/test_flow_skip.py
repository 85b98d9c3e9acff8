"""No optical flow where nobody is near a line: the gate's crossings are density x velocity, so a
frame with no density in any of the camera's bands reads exactly zero without the flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityResult, EveryCamera
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import band_crossings, band_half_width_m
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import SitePlan, compile_plan

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
W, H = 768, 576


def demo_plan() -> SitePlan:
    return compile_plan(build_site_geometry(load_site(DEMO_SITE), {"view001": (W, H)}), {})


class MapCounter:
    """Returns the density it is given (the frame's pixels do not matter to these tests)."""

    def __init__(self) -> None:
        self.density = np.zeros((H // 8, W // 8), np.float32)

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        return DensityResult(self.density.copy(), H, W)


class RandomFlow:
    """A velocity that is not zero anywhere, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.rng = np.random.default_rng(3)

    def __call__(self, a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        self.calls += 1
        return self.rng.normal(0.0, 40.0, (*a.shape[:2], 2)).astype(np.float32)


def run_frames(plan: SitePlan, densities: list[np.ndarray]) -> tuple[list[dict[str, object]], int]:
    counter, flow = MapCounter(), RandomFlow()
    pipe = FramePipeline(plan, EveryCamera(counter), flow=flow)
    frame = np.zeros((H, W, 3), np.uint8)
    rows: list[dict[str, object]] = []
    for k, density in enumerate(densities):
        counter.density = density
        out = pipe.process(Sample("view001", 1000.0 + k, frame, frame, 0.1))
        rows += out.line_rows
    return rows, flow.calls


@pytest.mark.parametrize("period", [0.5, 1.0, 2.0])
def test_density_outside_the_cells_read_gives_zero_crossings_whatever_the_velocity(period: float):
    """The cells the pipeline checks hold every cell ``band_crossings`` reads: density everywhere
    else, with any velocity, crosses nothing (so skipping the flow there changes nothing)."""
    plan = demo_plan()
    pipe = FramePipeline(plan, EveryCamera(MapCounter()))
    [line] = plan.lines.values()
    gm = plan.geometry.cameras["view001"].ground_map
    rows, cols = pipe._density_cells("view001", [line], band_half_width_m(period), gm.cell)
    density = np.random.default_rng(1).uniform(0.01, 0.2, gm.shape).astype(np.float32)
    density[rows, cols] = 0.0
    assert density.sum() > 100  # most of the map is outside the band
    velocity = np.random.default_rng(2).normal(0.0, 40.0, (H, W, 2)).astype(np.float32)
    counts = band_crossings(density, gm.cell, velocity, gm.ground_to_image, *line.passage, line.in_normal,
                            period, band_half_width_m(period), body=pipe._body("view001"))
    assert counts.in_count == 0.0 and counts.out_count == 0.0
    # ...and one person's worth of density inside them is read
    density[(rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2] = 1.0
    counts = band_crossings(density, gm.cell, velocity, gm.ground_to_image, *line.passage, line.in_normal,
                            period, band_half_width_m(period), body=pipe._body("view001"))
    assert counts.in_count + counts.out_count > 0.0


def test_the_flow_is_skipped_only_when_no_band_holds_anyone():
    plan = demo_plan()
    gm = plan.geometry.cameras["view001"].ground_map
    pipe = FramePipeline(plan, EveryCamera(MapCounter()))
    # the cells of the deepest band, the camera's configured sampling period's (1 s on the demo)
    rows, cols = pipe._density_cells("view001", list(plan.lines.values()), band_half_width_m(1.0), gm.cell)
    away = np.zeros(gm.shape, np.float32)
    away[:rows.start, :] = 0.05  # people, but none near the gate
    near = away.copy()
    near[rows, cols] = 0.02
    line_rows, calls = run_frames(plan, [away, away, near, away])
    assert calls == 1  # only for the frame with density in the band
    assert [r["in_count"] for r in line_rows][:2] == [0.0, 0.0]
    assert [r["out_count"] for r in line_rows][:2] == [0.0, 0.0]
    assert [r["flow_pmm"] for r in line_rows][:2] == [0.0, 0.0]
    assert line_rows[2]["in_count"] + line_rows[2]["out_count"] > 0.0
    assert [r["period_s"] for r in line_rows] == [1.0, 1.0, 1.0, 1.0]
