"""Counting lines: where the demo site's gate line is planned in its camera's image."""

from __future__ import annotations

import numpy as np

from crowdsafe.config.site import load_site
from crowdsafe.geometry.lines import plan_line
from crowdsafe.geometry.site import build_site_geometry
from tests.support.geometry import DEMO_SITE


def test_demo_line_is_planned_on_the_camera_with_in_towards_the_scene():
    plan = plan_line(build_site_geometry(load_site(DEMO_SITE)), "east_gate")
    assert plan is not None and plan.camera_id == "view001"
    assert plan.visible_fraction > 0.9
    for u, v in (plan.a_px, plan.b_px):
        assert 0 <= u <= 768 and 0 <= v <= 576
    # "in" = from the right edge of the image into the scene: the image-left side of the line.
    (ax, ay), (bx, by) = plan.a_px, plan.b_px
    positive_side = np.array([by - ay, -(bx - ax)])
    in_side = positive_side if plan.in_is_positive else -positive_side
    assert in_side[0] < 0
