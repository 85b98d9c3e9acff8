"""The simulated bottleneck the gate estimators are scored on: exact crossings, a calibrated view."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsafe.simulate.jupedsim_model import jupedsim_available

pytestmark = pytest.mark.skipif(not jupedsim_available(), reason="jupedsim is not installed (scripts/test.sh "
                                                                  "installs its simulation core)")


@pytest.fixture(scope="module")
def crowd():
    from crowdsafe.simulate.bottleneck import simulate

    return simulate(1.2, n_people=40, seed=3)


def test_everyone_walks_through_the_gap_once(crowd):
    into, back = crowd.crossing_times()
    assert len(into) == 40 and len(back) == 0
    assert np.all(np.diff(np.sort(into)) >= 0) and into.max() < crowd.duration_s


def test_the_band_counts_the_simulated_crossings_and_a_gap_wide_snapshot_loses_the_blur(crowd):
    from crowdsafe.geometry.lines import BLUR_SIGMAS, plan_line
    from crowdsafe.measure.flow import band_crossings, band_half_width_m, line_flux
    from crowdsafe.simulate.bottleneck import RECORD_DT_S, VirtualCamera, bottleneck_geometry, camera_pose

    kernel, period = 0.5, 1.0
    geo = bottleneck_geometry(camera_pose(7.0), crowd.gap_m)
    plan = plan_line(geo, "gap", blur_m=BLUR_SIGMAS * kernel)
    assert plan is not None
    gm = geo.cameras["cam"].ground_map
    cam = VirtualCamera(geo, kernel, noise=0.0)
    step = round(period / RECORD_DT_S)
    band = snapshot = 0.0
    for i in range(step // 2, len(crowd.positions) - 1, step):
        density, velocity = cam.render(crowd.positions[i], crowd.positions[i + 1])
        band += band_crossings(density, gm.cell, velocity, gm.ground_to_image, *plan.passage, plan.in_normal,
                               period, band_half_width_m(period)).in_count
        f = line_flux(density, gm.cell, velocity, plan.a_px, plan.b_px)
        snapshot += (f.positive_per_s if plan.in_is_positive else f.negative_per_s) * period
    assert band == pytest.approx(40, rel=0.1)
    assert snapshot < 0.8 * 40  # the line as wide as the gap misses the blur beyond its ends
