"""The cells a camera's readings use: every zone cell it weighs, and every cell a line's flux reads."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.geometry.lines import plan_lines
from crowdsafe.geometry.region import line_cells, needed_cells
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import line_flux
from tests.support.sites import demo_part

SQUARE = [[-14.8, -11.4], [-10.8, -11.4], [-10.8, -7.4], [-14.8, -7.4]]  # 4 m around image (400, 360)
GATE = {"id": "gate", "a": [-8.0, -14.0], "b": [-2.0, -14.0], "width_m": 6.0}


@pytest.mark.parametrize(("a", "b"), [
    ((20.0, 20.0), (60.0, 20.0)),  # along a row
    ((100.5, 10.0), (103.0, 90.0)),  # steep
    ((0.0, 0.0), (127.0, 95.0)),  # corner to corner: clamped at the border
    ((50.0, 50.0), (50.6, 50.2)),  # shorter than a pixel's step
])
def test_line_band_holds_every_cell_the_flux_reads(a, b):
    """Zeroing every cell outside the band leaves the flux unchanged: it reads nothing else."""
    rng = np.random.default_rng(3)
    density = rng.random((12, 16)).astype(np.float32)
    velocity = rng.normal(size=(96, 128, 2))
    band = line_cells(density.shape, 8, a, b)
    if np.hypot(b[0] - a[0], b[1] - a[1]) < 1.0:
        assert band.sum() <= 9  # one point: its cell and its neighbours
        return
    full = line_flux(density, 8, velocity, a, b)
    banded = line_flux(np.where(band, density, 0), 8, velocity, a, b)
    assert banded.positive_per_s == pytest.approx(full.positive_per_s)
    assert banded.negative_per_s == pytest.approx(full.negative_per_s)
    assert band.sum() < band.size / 2 or a == (0.0, 0.0)


@pytest.mark.parametrize("lines", [[], [GATE]])
def test_needed_cells_are_the_zone_cells_and_the_line_band(tmp_path, lines):
    site = load_site(demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}], lines))
    geometry = build_site_geometry(site)
    camera = geometry.cameras["view001"]
    plans = list(plan_lines(geometry).values())
    needed = needed_cells(camera, plans)
    zone = camera.zone_weights["square"] > 0
    assert zone.any() and (needed >= zone).all()
    expected = zone.copy()
    for plan in plans:
        expected |= line_cells(needed.shape, camera.ground_map.cell, plan.a_px, plan.b_px)
    assert (needed == expected).all()
    assert needed.mean() < 0.5  # part of the frame: there is a region to save
