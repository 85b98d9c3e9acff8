"""Counting lines: where the demo site's gate line is planned in its camera's image."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsafe.config.site import SiteError, load_site, parse_site
from crowdsafe.geometry.homography import homography_jacobian
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


def _site_with(lines: list[dict]) -> dict:
    import yaml

    data = yaml.safe_load(DEMO_SITE.read_text())
    data["cameras"][0].pop("tuning", None)
    data["lines"] = lines
    data.pop("staffing", None)
    return data


def test_without_a_passage_the_line_reaches_past_its_ends_by_the_blur_there():
    from crowdsafe.geometry.lines import BLUR_SIGMAS, DENSITY_SIGMA_PX

    geometry = build_site_geometry(load_site(DEMO_SITE))
    plan = plan_line(geometry, "east_gate")
    assert plan is not None
    (pax, pay), (pbx, pby) = plan.passage
    assert pay == pytest.approx(-12.0) and pby == pytest.approx(-12.0)  # along the line
    beyond_a, beyond_b = -13.5 - pax, pbx - 0.0
    # 2 sigma of a 15 px kernel: tens of centimetres near the camera, more far away (b is further).
    assert 0.2 < beyond_a < beyond_b < 3.0
    scale_b = float(np.sqrt(abs(np.linalg.det(homography_jacobian(
        geometry.cameras["view001"].ground_map.image_to_ground, np.array([plan.b_px]))[0]))))
    assert beyond_b == pytest.approx(BLUR_SIGMAS * DENSITY_SIGMA_PX * scale_b, rel=0.05)
    assert plan.in_normal == pytest.approx((0.0, 1.0))


def test_a_given_passage_is_used_as_drawn():
    data = _site_with([{"id": "gate", "a": [-8.0, -12.0], "b": [-7.0, -12.0], "width_m": 1.0,
                        "passage": [[-10.0, -12.0], [-5.0, -12.0]]},
                       {"id": "door", "a": [-8.0, -10.0], "b": [-7.0, -10.0],
                        "passage": {"beyond_a_m": 0.5, "beyond_b_m": 1.5}}])
    geometry = build_site_geometry(parse_site(data))
    gate, door = plan_line(geometry, "gate"), plan_line(geometry, "door")
    assert gate is not None and door is not None
    assert gate.passage == ((-10.0, -12.0), (-5.0, -12.0)) and gate.width_m == 1.0
    assert door.passage == (pytest.approx((-8.5, -10.0)), pytest.approx((-5.5, -10.0)))


def test_the_automatic_passage_stops_half_way_to_the_next_gate_and_short_of_a_drawn_passage():
    data = _site_with([{"id": "left", "a": [-9.0, -12.0], "b": [-8.0, -12.0]},
                       {"id": "right", "a": [-7.6, -12.0], "b": [-6.6, -12.0]},
                       {"id": "far", "a": [-6.0, -12.0], "b": [-5.5, -12.0],
                        "passage": [[-6.3, -12.0], [-5.0, -12.0]]}])
    geometry = build_site_geometry(parse_site(data))
    left, right = plan_line(geometry, "left"), plan_line(geometry, "right")
    assert left is not None and right is not None
    assert left.passage[1][0] == pytest.approx(-7.8)  # half of the 0.4 m to "right"
    assert right.passage[0][0] == pytest.approx(-7.8)
    assert right.passage[1][0] <= -6.3 + 1e-9  # not into "far"'s passage
    assert left.passage[0][0] < -9.2  # free to reach out on the other side


@pytest.mark.parametrize(("passage", "message"), [
    ([[-10.0, -15.0], [-5.0, -15.0]], "passes 3.0 m from the gate's middle"),
    ([[-8.0, -12.0], [-8.0, -12.01]], "at least 5 cm"),
])
def test_a_passage_that_misses_its_gate_is_refused(passage, message):
    data = _site_with([{"id": "gate", "a": [-8.0, -12.0], "b": [-7.0, -12.0], "passage": passage}])
    with pytest.raises(SiteError, match=message):
        parse_site(data)
