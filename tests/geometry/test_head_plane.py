"""Head-plane geometry: density placed where heads are, people placed where they stand.

Synthetic pinhole cameras are built from a pose (``look_at``), outside the code under test, and
each property holds for any camera: a point at a known height lands above the floor spot it is
over; a camera looking straight down only rescales; a person walking across a gate is counted
once, in the right direction. The PETS 2009 clip checks the same end to end (``eval-site``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import SiteError, load_site, parse_site
from crowdsafe.counting.counter import DensityResult, EveryCamera
from crowdsafe.evaluation.site import crossing, match_steps, rasterise
from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.pose import plane_homography, pose_from_homography
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from tests.support.geometry import DEMO_SITE, SHARED_DATA, at_height, look_at, render_density

SIZE = (640, 480)
CAL_GROUND = np.array([[-3.0, 0.0], [3.0, 0.0], [3.0, 6.0], [-3.0, 6.0], [0.0, 3.0], [-2.0, 8.0],
                       [2.0, 10.0]])


def camera_site(g2i: np.ndarray, *, focal: float | None = None, **extra: object) -> dict:
    cal: dict[str, object] = {"image_points": apply(g2i, CAL_GROUND).tolist(),
                              "ground_points": CAL_GROUND.tolist(), "image_size": list(SIZE),
                              "max_cell_area_m2": 1e6}
    if focal is not None:
        cal["focal_px"] = focal
    return {"name": "synthetic", "cameras": [{"id": "c", "source": "c.mp4", "calibration": cal, **extra}]}


# ---------------------------------------------------------------- the plane at a height

@settings(max_examples=40, deadline=None)
@given(height=st.floats(4.0, 15.0), back=st.floats(6.0, 25.0), side=st.floats(-8.0, 8.0),
       focal=st.floats(400.0, 1500.0), head=st.floats(0.0, 2.0))
def test_a_point_at_a_known_height_lands_above_its_floor_spot(height: float, back: float, side: float,
                                                              focal: float, head: float):
    g2i, P = look_at((side, -back, height), (0.0, 4.0, 0.0), focal, SIZE)
    fit_matrix = np.linalg.inv(g2i)
    fit_matrix /= np.abs(fit_matrix[2]).max() * np.sign(fit_matrix[2] @ [320.0, 400.0, 1.0])
    pose = pose_from_homography(fit_matrix, SIZE)
    assert pose is not None and pose.height_m == pytest.approx(height, rel=1e-6)
    ground = np.array([[-2.0, 1.0], [0.0, 4.0], [2.5, 7.0], [1.0, 2.0]])
    pixels = apply(at_height(P, head), ground)  # where the camera sees the points `head` m up
    landed = apply(plane_homography(pose, fit_matrix, head), pixels)
    np.testing.assert_allclose(landed, ground, atol=1e-6)


def test_a_camera_looking_straight_down_only_rescales_about_its_nadir():
    """Looking straight down from H, the plane at h is the floor seen from H - h: every ground
    distance from the nadir shrinks by (H - h) / H, and cell areas by its square. The focal
    length of such a camera cannot be estimated (no perspective), so it is given."""
    H, h, f = 10.0, 1.6, 400.0
    K = np.array([[f, 0, 320.0], [0, f, 240.0], [0, 0, 1.0]])
    R = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # optical axis down, image v = -y
    t = -R @ np.array([0.0, 4.0, H])
    P = K @ np.column_stack([R, t])
    site = parse_site(camera_site(P[:, [0, 1, 3]], focal=f))
    geo = build_site_geometry(site)
    gm = geo.cameras["c"].ground_map
    assert gm.plane_height_m == 1.6 and gm.pose is not None
    floor = geo.cameras["c"].fit.matrix
    pixels = np.array([[10.0, 10.0], [320.0, 240.0], [600.0, 50.0], [100.0, 470.0]])
    nadir = np.array([0.0, 4.0])
    expected = nadir + (apply(floor, pixels) - nadir) * (H - h) / H
    np.testing.assert_allclose(apply(gm.image_to_ground, pixels), expected, atol=1e-9)
    floor_area = (8 / f * H) ** 2
    np.testing.assert_allclose(gm.area_m2[gm.valid], floor_area * ((H - h) / H) ** 2, rtol=1e-9)
    # Without the focal length the pose is unknown: refused, or placed at the floor when accepted.
    with pytest.raises(SiteError, match=r"cameras\[0\]\.calibration: camera pose unknown.*focal_px"):
        build_site_geometry(parse_site(camera_site(P[:, [0, 1, 3]])))
    accepted = build_site_geometry(parse_site(camera_site(P[:, [0, 1, 3]], accept_floor_mapping=True)))
    assert accepted.cameras["c"].ground_map.plane_height_m == 0.0


def test_head_height_is_a_site_setting_overridable_per_camera():
    g2i, _ = look_at((0.0, -12.0, 7.0), (0.0, 4.0, 0.0), 700.0, SIZE)
    data = camera_site(g2i)
    assert build_site_geometry(parse_site(data)).cameras["c"].ground_map.plane_height_m == 1.6
    data["head_height_m"] = 1.2
    assert build_site_geometry(parse_site(data)).cameras["c"].ground_map.plane_height_m == 1.2
    data["cameras"][0]["head_height_m"] = 1.75
    assert build_site_geometry(parse_site(data)).cameras["c"].ground_map.plane_height_m == 1.75
    data["cameras"][0]["head_height_m"] = 6.8  # refused by range (> 3 m)
    with pytest.raises(SiteError, match=r"cameras\[0\]\.head_height_m"):
        parse_site(data)
    low, _ = look_at((0.0, -12.0, 1.9), (0.0, 4.0, 0.0), 700.0, SIZE)  # a camera at chest height
    with pytest.raises(SiteError, match=r"1\.90 m above the floor.*not above the head plane"):
        build_site_geometry(parse_site(camera_site(low)))


# ---------------------------------------------------------------- a person walking through a gate

def walk_through_gate(camera_centre: tuple[float, float, float], direction: int,
                      monkeypatch: pytest.MonkeyPatch, phase: float = 0.0) -> tuple[float, float]:
    """(in, out) crossings measured as one person walks across the gate y = 4 (in = +y).

    ``phase`` shifts the walk by that fraction of one frame's step: where the samples fall."""
    g2i, P = look_at(camera_centre, (0.0, 4.0, 0.0), 700.0, SIZE)
    data = camera_site(g2i)
    data["lines"] = [{"id": "gate", "a": [-3.0, 4.0], "b": [3.0, 4.0], "positive": "left"}]  # left of a→b: +y
    geo = build_site_geometry(parse_site(data))
    dt, speed = 0.1, 1.4
    ys = np.arange(4.0 - 2.0 * direction, 4.0 + 2.0 * direction, direction * speed * dt) + \
        phase * direction * speed * dt
    state: dict[str, np.ndarray] = {}

    def project(y: float, z: float) -> np.ndarray:
        return (P @ [0.5, y, z, 1.0])[:2] / (P @ [0.5, y, z, 1.0])[2]

    class HeadCounter:
        def count(self, image_bgr: np.ndarray) -> DensityResult:
            return DensityResult(density=state["density"].astype(np.float32), image_height=SIZE[1],
                                 image_width=SIZE[0])

    # Each pixel of the frame holds its own coordinates, so the flow, which is asked only about the
    # part of the frame the line reads (measure.flow.flow_in_box), knows which part it was given.
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    frame = np.dstack([xx & 255, yy & 255, (xx >> 8) | ((yy >> 8) << 4)]).astype(np.uint8)

    def body_flow(prev: np.ndarray, nxt: np.ndarray, dt_s: float) -> np.ndarray:
        x0 = int(prev[0, 0, 0]) + 256 * (int(prev[0, 0, 2]) & 15)
        y0 = int(prev[0, 0, 1]) + 256 * (int(prev[0, 0, 2]) >> 4)
        h, w = prev.shape[:2]  # the person's own image motion over their body, zero elsewhere
        return state["velocity"][y0:y0 + h, x0:x0 + w]

    pipe = FramePipeline(geo, EveryCamera(HeadCounter()), flow=body_flow)
    total_in = total_out = 0.0
    for k, y in enumerate(ys):
        head, feet = project(y, 1.6), project(y, 0.0)
        state["density"] = render_density(SIZE, head[None])
        velocity = np.zeros((SIZE[1], SIZE[0], 2), np.float32)
        width = 0.25 * abs(feet[1] - head[1])
        rows = slice(int(max(head[1] - width, 0)), int(min(feet[1], SIZE[1])))
        cols = slice(int(max(head[0] - width, 0)), int(min(head[0] + width, SIZE[0])))
        for r in range(rows.start, rows.stop):  # each body row moves like its own height above the floor
            z = 1.6 * (feet[1] - r) / (feet[1] - head[1])
            velocity[r, cols] = (project(y + direction * speed * dt, z) - project(y, z)) / dt
        state["velocity"] = velocity
        out = pipe.process(Sample("c", ts=k * dt, image=frame, pair=frame, pair_dt=dt))
        (row,) = out.line_rows
        total_in += float(row["in_count"]) / float(row["period_s"]) * dt
        total_out += float(row["out_count"]) / float(row["period_s"]) * dt
    return total_in, total_out


CAMERAS = [(0.0, -6.0, 3.5), (0.0, -12.0, 7.0), (3.0, -6.0, 12.0), (-6.0, -15.0, 5.0)]  # low .. high


@pytest.mark.parametrize("centre", CAMERAS)
@pytest.mark.parametrize("direction", [1, -1])
def test_a_person_walking_across_a_gate_is_counted_once_in_the_right_direction(centre, direction,
                                                                               monkeypatch):
    # Counted from sampled frames, one walker is right on average over where the samples fall.
    walks = [walk_through_gate(centre, direction, monkeypatch, phase) for phase in (0.0, 0.25, 0.5, 0.75)]
    total_in, total_out = np.mean(walks, axis=0)
    forward, backward = (total_in, total_out) if direction > 0 else (total_out, total_in)
    assert forward == pytest.approx(1.0, abs=0.08), (centre, direction, total_in, total_out)
    assert backward < 0.05


# ---------------------------------------------------------------- eval-site pieces

def test_crossing_counts_a_step_over_the_segment_once_by_side():
    a, b, n = np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([0.0, 1.0])
    assert crossing(np.array([1.0, -0.1]), np.array([1.0, 0.1]), a, b, n) == 1
    assert crossing(np.array([1.0, 0.1]), np.array([1.0, -0.1]), a, b, n) == -1
    assert crossing(np.array([5.0, -0.1]), np.array([5.0, 0.1]), a, b, n) == 0  # beyond the end
    # Pausing on the line: the step onto it counts, the step off it does not.
    assert crossing(np.array([1.0, -0.1]), np.array([1.0, 0.0]), a, b, n) == 1
    assert crossing(np.array([1.0, 0.0]), np.array([1.0, 0.1]), a, b, n) == 0


def test_match_steps_pairs_closest_points_within_the_gate():
    before = np.array([[0.0, 0.0], [3.0, 0.0], [10.0, 10.0]])
    after = np.array([[3.1, 0.1], [0.1, 0.0], [20.0, 20.0]])
    pairs = match_steps(before, after, gate_m=1.0)
    assert sorted((tuple(p), tuple(q)) for p, q in pairs) == [((0.0, 0.0), (0.1, 0.0)),
                                                              ((3.0, 0.0), (3.1, 0.1))]


def test_rasterise_conserves_each_point_and_is_continuous():
    pts = np.array([[12.0, 20.0], [100.5, 33.3], [4.0, 4.0]])
    d = rasterise(pts, (10, 20), 8)
    assert d.sum() == pytest.approx(3.0, abs=1e-5)
    moved = rasterise(pts + np.array([0.01, 0.0]), (10, 20), 8)
    assert np.abs(moved - d).sum() < 0.01
    assert rasterise(np.array([[-5.0, 3.0]]), (10, 20), 8).sum() == 0.0  # outside the frame


# ---------------------------------------------------------------- PETS 2009, end to end

def _video_points() -> tuple[Path, Path]:
    feet, heads = SHARED_DATA / "video" / "vtest_points.json", SHARED_DATA / "video" / "vtest_heads.json"
    if not (feet.exists() and heads.exists()):
        pytest.skip(f"PETS annotated feet/heads not found under {SHARED_DATA / 'video'} (shared dev data)")
    return feet, heads


def test_eval_site_geometry_alone_places_people_and_counts_gate_crossings(tmp_path: Path):
    """The acceptance run of the issue on the first half of the clip (every frame of 0..399)."""
    feet, heads = _video_points()
    out = tmp_path / "e.json"
    result = CliRunner().invoke(app, ["eval-site", str(DEMO_SITE), "--camera", "view001", "--feet", str(feet),
                                      "--density-from", str(heads), "--frames", "0:400:1",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    zones, gate = data["zones"], data["lines"]["east_gate"]
    assert abs(zones["walkway"]["bias_pct"]) <= 3
    assert zones["lawn"]["truth_mean"] == 0 and zones["lawn"]["measured_mean"] <= 0.05  # nobody there yet
    assert zones["forecourt"]["truth_mean"] == 0 and zones["forecourt"]["measured_mean"] <= 0.05
    assert data["count"]["mae"] < 1e-3  # the points themselves are the counter
    for way in ("in", "out"):
        truth, measured = gate[f"truth_{way}"], gate[f"measured_{way}"]
        assert truth >= 5 and abs(measured - truth) <= 0.2 * truth, (way, truth, measured)
    assert "east_gate" in result.output and "walkway" in result.output


def test_eval_site_refuses_bad_input_clearly(tmp_path: Path):
    feet, _ = _video_points()
    runner = CliRunner()
    bad = runner.invoke(app, ["eval-site", str(DEMO_SITE), "--camera", "nope", "--feet", str(feet)])
    assert bad.exit_code == 2 and "the site has view001" in bad.output
    frames = runner.invoke(app, ["eval-site", str(DEMO_SITE), "--camera", "view001", "--feet", str(feet),
                                 "--frames", "9:3"])
    assert frames.exit_code == 2 and "START < STOP" in frames.output
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2")
    broken = runner.invoke(app, ["eval-site", str(DEMO_SITE), "--camera", "view001", "--feet", str(junk)])
    assert broken.exit_code == 2 and "cannot read annotated points" in broken.output


def test_demo_site_camera_pose_puts_the_head_plane_under_the_camera():
    site = load_site(DEMO_SITE)
    gm = build_site_geometry(site).cameras["view001"].ground_map
    assert gm.plane_height_m == pytest.approx(1.6) and gm.pose is not None
    assert math.isclose(gm.pose.height_m, 7.2, abs_tol=0.2)


@pytest.mark.slow
def test_eval_site_with_the_real_counter_puts_nobody_in_the_empty_forecourt(bundled_video: Path):
    """The site's own counter on 20 frames spread over the clip: the forecourt, where nobody
    stands, stays empty, and the walkway holds about the annotated people (no background
    subtraction or tuning yet, so the lawn's static false positives are not checked here)."""
    from crowdsafe.counting.engines import EngineSpec, EngineUnavailable
    from crowdsafe.counting.weights import WeightsError
    from crowdsafe.evaluation.site import evaluate_site, load_frame_points
    from crowdsafe.runtime.counters import CameraCounters

    feet, _ = _video_points()
    site = load_site(DEMO_SITE)
    geometry = build_site_geometry(site)
    try:
        counter = CameraCounters(geometry, EngineSpec(precision="fp32"))
    except (WeightsError, EngineUnavailable) as exc:
        pytest.skip(f"counting model unavailable ({exc}); run `crowdsafe models fetch`")
    result = evaluate_site(geometry, "view001", str(bundled_video), load_frame_points(feet),
                           range(0, 795, 40), counter).as_dict()
    assert result["count"]["n"] == 20
    assert result["zones"]["forecourt"]["measured_mean"] <= 0.3
    assert abs(result["zones"]["walkway"]["bias_pct"]) <= 30, result["zones"]["walkway"]
