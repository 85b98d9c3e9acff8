"""Flow only where a line reads it: ``band_box`` must hold every point ``band_crossings`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.geometry.body import body_motion
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import band_box, band_crossings, band_half_width_m, flow_in_box
from crowdsafe.runtime.plan import compile_plan

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


@pytest.mark.parametrize("period", [0.5, 1.0, 2.0])
def test_velocity_outside_the_box_changes_nothing_the_gate_measures(period: float):
    """Poison the velocity outside the box: if any read fell outside it, the crossings would change."""
    site = load_site(DEMO_SITE)
    plan = compile_plan(build_site_geometry(site, {"view001": (768, 576)}), {})
    [line] = plan.lines.values()
    gm = plan.geometry.cameras["view001"].ground_map
    body = body_motion(gm)
    assert body is not None
    off = body.offset_px.reshape(-1, 2)
    reach = (max(-off[:, 0].min(), 0.0), max(-off[:, 1].min(), 0.0), off[:, 0].max(), off[:, 1].max())
    half = band_half_width_m(period)
    x0, y0, x1, y1 = band_box(gm.ground_to_image, *line.passage, line.in_normal, half, gm.image_size, reach,
                              margin_px=0)
    assert 0 <= x0 < x1 <= 768 and 0 <= y0 < y1 <= 576
    assert (x1 - x0) * (y1 - y0) < 0.5 * 768 * 576  # the demo gate needs well under half the frame
    rng = np.random.default_rng(1)
    density = rng.uniform(0.0, 0.05, gm.shape).astype(np.float32)
    velocity = rng.normal(0.0, 30.0, (576, 768, 2)).astype(np.float32)
    poisoned = velocity.copy()
    outside = np.ones((576, 768), bool)
    outside[y0:y1, x0:x1] = False
    poisoned[outside] = 1e4
    args = (gm.ground_to_image, *line.passage, line.in_normal, period, half)
    clean = band_crossings(density, gm.cell, velocity, *args, body=body)
    dirty = band_crossings(density, gm.cell, poisoned, *args, body=body)
    assert clean.in_count > 0 and clean.out_count > 0
    assert dirty == clean


def test_flow_in_a_box_is_the_flow_of_the_box_at_the_frames_flow_resolution():
    calls = []

    def flow(a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        calls.append(a.shape)
        return np.full((*a.shape[:2], 2), 3.0 / dt, np.float32)

    frame = np.zeros((576, 768, 3), np.uint8)
    v = flow_in_box(flow, frame, frame, 0.5, (100, 50, 300, 250))
    assert calls == [(200, 200, 3)] and v.shape == (576, 768, 2)
    assert np.all(v[50:250, 100:300] == 6.0) and v[:50].sum() == 0 and v[:, 300:].sum() == 0
    big = np.zeros((1080, 1920, 3), np.uint8)  # flow of the whole frame would run at 768/1920 = 0.4
    calls.clear()
    v = flow_in_box(flow, big, big, 1.0, (0, 0, 1000, 500))
    assert calls == [(200, 400, 3)]
    assert v[0:500, 0:1000] == pytest.approx(np.full((500, 1000, 2), 3.0 / 0.4))
