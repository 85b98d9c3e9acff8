"""A gate's band worked out once: every frame reads what the plain formula gives, and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.geometry.body import BodyMotion, body_motion
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import (
    GateBand,
    SegmentReader,
    _bilinear,
    band_crossings,
    band_half_width_m,
    line_flux,
)
from crowdsafe.runtime.plan import compile_plan

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


def _plain_flux(density: np.ndarray, cell: int, velocity: np.ndarray, a: np.ndarray, b: np.ndarray,
                body: BodyMotion | None) -> tuple[float, float]:
    """∫ rho (v . n) ds along a→b, point by point as the docstring states it (the reference)."""
    length = float(np.hypot(*(b - a)))
    n = max(int(np.ceil(length / 2.0)), 1)
    normal = np.array([b[1] - a[1], -(b[0] - a[0])]) / length
    positive = negative = 0.0
    for k in range(n):
        p = a + (k + 0.5) / n * (b - a)
        rho = _bilinear(density, np.array([p[0] / cell]), np.array([p[1] / cell]))[0] / cell**2
        if body is None:
            v = _bilinear(velocity, np.array([p[0]]), np.array([p[1]]))[0]
        else:
            at = (np.array([p[0] / cell]), np.array([p[1] / cell]))
            off = _bilinear(body.offset_px, *at)[0]
            to_head = _bilinear(body.to_head.reshape(*body.to_head.shape[:2], 4), *at)[0]
            torso = _bilinear(velocity, np.array([p[0] + off[0]]), np.array([p[1] + off[1]]))[0]
            v = to_head.reshape(2, 2) @ torso
        f = rho * float(v @ normal) * length / n
        positive, negative = positive + max(f, 0.0), negative + max(-f, 0.0)
    return positive, negative


def test_bilinear_reads_are_exact_on_a_plane_and_clamped_at_the_border():
    """The reads the reference and the band share: exact for an affine field at pixel centres
    offset by half a pixel, the border's value beyond it, per channel."""
    rows, cols = np.mgrid[0:6, 0:9].astype(np.float64)
    plane = np.dstack([3.0 * cols - 2.0 * rows + 1.0, cols + rows])  # value at pixel centre (c + .5, r + .5)
    xs, ys = np.array([0.5, 4.25, 7.9, 30.0, -5.0]), np.array([0.5, 2.75, 5.1, 1.5, 2.5])
    got = _bilinear(plane, xs, ys)
    cx, cy = np.clip(xs - 0.5, 0, 8), np.clip(ys - 0.5, 0, 5)
    np.testing.assert_allclose(got, np.column_stack([3 * cx - 2 * cy + 1, cx + cy]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_bilinear(plane[:, :, 1], xs, ys), cx + cy, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def demo():
    site = load_site(DEMO_SITE)
    plan = compile_plan(build_site_geometry(site, {"view001": (768, 576)}), {})
    [line] = plan.lines.values()
    gm = plan.geometry.cameras["view001"].ground_map
    return line, gm, body_motion(gm)


@pytest.mark.parametrize("with_body", [False, True])
def test_segments_read_in_one_pass_give_the_plain_flux_of_each(demo, with_body: bool):
    _, gm, body = demo
    body = body if with_body else None
    rng = np.random.default_rng(3)
    density = rng.uniform(0.0, 0.1, gm.shape).astype(np.float32)
    velocity = rng.normal(0.0, 40.0, (576, 768, 2)).astype(np.float32)
    ends = rng.uniform([0, 0], [768, 576], (6, 2, 2))
    ends[0, 1] = ends[0, 0] + (1.5, 0.2)  # a segment shorter than one step: read at one point
    got = SegmentReader(ends, gm.cell, gm.shape, (576, 768), body=body).fluxes(density, velocity)
    want = [_plain_flux(density, gm.cell, velocity, a, b, body) for a, b in ends]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(line_flux(density, gm.cell, velocity, tuple(ends[2, 0]), tuple(ends[2, 1]),
                                         body=body).positive_per_s, want[2][0], rtol=1e-12)


def test_a_band_worked_out_once_reads_every_frame_as_one_worked_out_afresh(demo):
    """The pipeline keeps one band per line and depth: nothing of one frame may leak into the next."""
    line, gm, body = demo
    half = band_half_width_m(1.0)
    kept = GateBand(gm.ground_to_image, gm.cell, gm.shape, (576, 768), *line.passage, line.in_normal, half,
                    body)
    rng = np.random.default_rng(5)
    for _ in range(4):
        density = rng.uniform(0.0, 0.05, gm.shape).astype(np.float32)
        velocity = rng.normal(0.0, 30.0, (576, 768, 2)).astype(np.float32)
        fresh = band_crossings(density, gm.cell, velocity, gm.ground_to_image, *line.passage, line.in_normal,
                               1.0, half, body=body)
        again = kept.crossings(density, velocity, 1.0)
        assert again.in_count == pytest.approx(fresh.in_count, rel=1e-12)
        assert again.out_count == pytest.approx(fresh.out_count, rel=1e-12)
        assert fresh.in_count > 0 and fresh.out_count > 0
    with pytest.raises(ValueError, match="read with taps"):  # maps of another size than it was worked out for
        kept.crossings(density[:-1], velocity, 1.0)


def test_band_depth_is_to_the_centimetre_so_jittered_intervals_share_a_band():
    assert {band_half_width_m(p) for p in (0.9996, 1.0, 1.0003)} == {1.0}
    assert band_half_width_m(0.1) == 0.3 and band_half_width_m(1.234) == 1.23
