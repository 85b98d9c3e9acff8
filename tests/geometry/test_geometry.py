"""Geometry on scenes whose truth is known: synthetic pinhole cameras, rendered density maps, PETS.

The synthetic cameras are built from a pose (K, R, t), not from the code under test, and the
density maps are rendered by integrating Gaussian blobs of known mass over the 8x8 cells, so
every expected number below comes from outside the geometry package.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely

from crowdsafe.geometry.ground_map import build_ground_map, shoelace
from crowdsafe.geometry.homography import CalibrationError, apply, fit_homography, jacobian_det
from crowdsafe.geometry.ownership import assign_ownership, owner_raster
from crowdsafe.geometry.pose import pose_from_homography
from crowdsafe.geometry.zones import footprint, zone_coverage
from tests.support.geometry import (
    CAM_A,
    CAM_B,
    DEMO_SITE,
    SHARED_DATA,
    SIZE,
    image_to_ground,
    look_at,
)

# ---------------------------------------------------------------- synthetic scenes















# ---------------------------------------------------------------- homography fit

def _pairs(g2i: np.ndarray, ground: np.ndarray) -> np.ndarray:
    return apply(g2i, ground)


GROUND_PTS = np.array([[-4.0, 0.0], [4.0, 0.0], [5.0, 8.0], [-5.0, 8.0], [0.0, 4.0], [2.0, 2.0], [-2.0, 6.0]])


def test_fit_recovers_a_known_camera_exactly():
    image = _pairs(CAM_A, GROUND_PTS)
    fit = fit_homography(image, GROUND_PTS)
    assert fit.n_inliers == len(GROUND_PTS)
    assert fit.rms_m < 1e-6 and fit.max_m < 1e-6
    probe = np.array([[100.0, 400.0], [500.0, 300.0]])
    np.testing.assert_allclose(apply(fit.matrix, probe), apply(image_to_ground(CAM_A), probe), atol=1e-6)
    assert np.all(jacobian_det(fit.matrix, image) < 0), "a real camera over a right-handed floor"


def test_ransac_reports_an_outlier_and_ignores_it():
    image = _pairs(CAM_A, GROUND_PTS)
    ground = GROUND_PTS.copy()
    ground[5] += [3.0, -2.0]  # a mistyped pair
    fit = fit_homography(image, ground, ransac_threshold_m=0.3)
    assert fit.inliers.tolist() == [True] * 5 + [False, True]
    assert fit.rms_m < 1e-6
    assert fit.errors_m[5] == pytest.approx(math.hypot(3.0, 2.0), rel=1e-6)


def test_reprojection_error_is_in_metres():
    image = _pairs(CAM_A, GROUND_PTS[:4])
    noisy = GROUND_PTS.copy()
    noisy[4] += [0.1, 0.0]  # 10 cm off, within the RANSAC threshold
    fit = fit_homography(np.vstack([image, _pairs(CAM_A, GROUND_PTS[4:])]), noisy, ransac_threshold_m=0.5)
    assert fit.n_inliers == 7
    assert 0.02 < fit.max_m < 0.1 and fit.rms_m < fit.max_m


@pytest.mark.parametrize(("image", "ground", "message"), [
    ([[0, 0], [10, 0], [0, 10]], [[0, 0], [1, 0], [0, 1]], "need at least 4 non-collinear points, got 3"),
    ([[0, 0], [10, 0], [20, 0], [30, 0], [40, 0]], [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]],
     "all 5 points lie on one line"),
    ([[0, 0], [100, 0], [200, 0], [50, 80]], [[0, 0], [1, 0], [2, 0], [0.5, 1]],
     "3 of the 4 points lie on one line"),
    ([[0, 0], [100, 0], [100, 100], [0, 0], [50, 20]], [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.2]],
     "points 0 and 3 are duplicates"),
    ([[0, 0], [100, 0], [100, 100], [0, 100]], [[0, 0], [1, 0], [1, 1], [1, 1]],
     "ground_points: points 2 and 3"),
])
def test_degenerate_point_sets_are_refused_with_the_reason(image, ground, message):
    with pytest.raises(CalibrationError, match=message):
        fit_homography(image, ground)


def test_collinear_ground_points_are_refused_even_if_the_image_points_are_fine():
    image = [[0, 0], [100, 0], [100, 100], [0, 100], [50, 50]]
    ground = [[0, 0], [1, 1], [2, 2], [3, 3], [1.5, 1.5]]
    with pytest.raises(CalibrationError, match="ground_points: need at least 4 non-collinear") as err:
        fit_homography(image, ground)
    assert err.value.field == "ground_points"


def test_mirrored_ground_frame_is_refused():
    image = _pairs(CAM_A, GROUND_PTS)
    mirrored = GROUND_PTS * [-1.0, 1.0]  # x flipped: a left-handed ground frame
    with pytest.raises(CalibrationError, match="mirrored"):
        fit_homography(image, mirrored)
    swapped = GROUND_PTS[:, ::-1]  # x and y swapped: also a mirror
    with pytest.raises(CalibrationError, match="mirrored"):
        fit_homography(image, swapped)


def test_horizon_through_the_floor_points_is_refused():
    # A shallow camera: the horizon is inside the image, at about v = 240 - 700*tan(10°) = 117.
    g2i = look_at((0.0, 0.0, 3.0), (0.0, 17.0, 0.0), 700.0, SIZE)[0]
    i2g = image_to_ground(g2i)
    below = np.array([[100.0, 400.0], [500.0, 420.0], [320.0, 300.0], [550.0, 250.0]])
    above = np.array([[200.0, 60.0], [450.0, 40.0]])  # sky: their "ground" point is behind the camera
    image = np.vstack([below, above])
    hom = np.column_stack([image, np.ones(len(image))]) @ i2g.T
    ground = hom[:, :2] / hom[:, 2:]  # what a careless tool would produce
    with pytest.raises(CalibrationError, match=r"horizon .* points \[4, 5\] lie on the other side"):
        fit_homography(image, ground)
    fit_homography(below, ground[:4])  # the floor points alone are fine


# ---------------------------------------------------------------- ground map, pose

def test_cell_areas_are_exact_and_sum_to_the_footprint_area():
    gm = build_ground_map(image_to_ground(CAM_A), SIZE)
    assert gm.valid.all()
    r, c = 40, 17
    quad = np.array([[c * 8, r * 8], [c * 8 + 8, r * 8], [c * 8 + 8, r * 8 + 8], [c * 8, r * 8 + 8]], float)
    expected = shapely.Polygon(apply(image_to_ground(CAM_A), quad)).area
    assert gm.area_m2[r, c] == pytest.approx(expected, rel=1e-9)
    image_rect = np.array([[0, 0], [640, 0], [640, 480], [0, 480]], float)
    whole = shapely.Polygon(apply(image_to_ground(CAM_A), image_rect)).area
    assert gm.area_m2.sum() == pytest.approx(whole, rel=1e-9)
    assert footprint(gm).area == pytest.approx(whole, rel=1e-9)
    # Far rows see more floor per cell than near rows.
    assert gm.area_m2[0].mean() > 10 * gm.area_m2[-1].mean()


def test_cells_beyond_the_horizon_or_too_large_are_masked():
    g2i = look_at((0.0, 0.0, 3.0), (0.0, 17.0, 0.0), 700.0, SIZE)[0]  # horizon at v ≈ 117
    unlimited = build_ground_map(image_to_ground(g2i), SIZE, max_cell_area_m2=1e12)
    gm = build_ground_map(image_to_ground(g2i), SIZE, max_cell_area_m2=4.0)
    assert not unlimited.valid[:15].any(), "rows reaching above the horizon see no floor"
    assert unlimited.valid[15:].all() and gm.valid[-20:].all()
    dropped = unlimited.valid & ~gm.valid
    assert dropped.any() and np.all(unlimited.area_m2[dropped] > 4.0), "grazing cells over 4 m² are masked"
    assert np.all(gm.area_m2[gm.valid] <= 4.0) and np.all(np.isnan(gm.area_m2[~gm.valid]))


def test_person_height_from_the_homography_matches_the_true_camera():
    g2i, P = look_at((0.0, -12.0, 7.0), (0.0, 4.0, 0.0), 700.0, SIZE)
    pose = pose_from_homography(image_to_ground(g2i), SIZE)
    assert pose is not None and pose.K[0, 0] == pytest.approx(700.0, rel=1e-6)
    assert pose.height_m == pytest.approx(7.0, rel=1e-6)
    gm = build_ground_map(image_to_ground(g2i), SIZE, pose=pose)
    r, c = 45, 40
    ground = gm.cell_centres_ground()[r, c]
    foot = P @ [*ground, 0.0, 1.0]
    head = P @ [*ground, 1.7, 1.0]
    expected = np.hypot(*(head[:2] / head[2] - foot[:2] / foot[2]))
    assert gm.person_px[r, c] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- zones

def test_fractional_coverage_of_a_half_covered_cell_is_exact():
    gm = build_ground_map(image_to_ground(CAM_A), SIZE)
    r, c = 30, 20
    u0, v0 = c * 8, r * 8
    # Zone = the floor under the upper half of cell (r, c) and the whole cell above it. Split
    # across v, where perspective changes the scale, the upper half holds less than half the floor.
    region = np.array([[u0, v0 - 8], [u0 + 8, v0 - 8], [u0 + 8, v0 + 4], [u0, v0 + 4]], float)
    zone = shapely.Polygon(apply(image_to_ground(CAM_A), region))
    cover = zone_coverage(gm, zone)
    upper = np.array([[u0, v0], [u0 + 8, v0], [u0 + 8, v0 + 4], [u0, v0 + 4]], float)
    whole = np.array([[u0, v0], [u0 + 8, v0], [u0 + 8, v0 + 8], [u0, v0 + 8]], float)
    expected = shoelace(apply(image_to_ground(CAM_A), upper)) / shoelace(apply(image_to_ground(CAM_A), whole))
    assert cover[r, c] == pytest.approx(expected, abs=1e-9)
    assert 0.5 < expected < 0.6, "perspective: the far (upper) half of a cell covers more floor"
    assert cover[r - 1, c] == pytest.approx(1.0, abs=1e-9)
    assert cover[r + 1, c] == 0.0 and cover.sum() == pytest.approx(1.0 + expected, abs=1e-9)


def test_affine_top_down_camera_half_cell_is_one_half():
    i2g = np.array([[0.05, 0.0, 0.0], [0.0, -0.05, 24.0], [0.0, 0.0, 1.0]])  # 5 cm pixels, y up
    gm = build_ground_map(i2g, SIZE)
    zone = shapely.box(0.0, 0.0, 10 * 0.4 + 0.2, 24.0)  # 10.5 cells wide
    cover = zone_coverage(gm, zone)
    assert cover[:, 10] == pytest.approx(np.full(60, 0.5))
    assert cover[:, :10] == pytest.approx(np.ones((60, 10)), abs=1e-12) and cover[:, 11:].max() == 0.0


# ---------------------------------------------------------------- ownership

def _two_camera_scene():
    maps = {"a": build_ground_map(image_to_ground(CAM_A), SIZE),
            "b": build_ground_map(image_to_ground(CAM_B), SIZE)}
    cells = {k: gm.cell_polygons() for k, gm in maps.items()}
    feet = {k: footprint(gm, cells[k]) for k, gm in maps.items()}
    return maps, cells, feet


def test_overlapping_cameras_partition_the_floor():
    maps, cells, feet = _two_camera_scene()
    own = assign_ownership(maps, feet, cells, samples=4)
    overlap = feet["a"].intersection(feet["b"])
    assert overlap.area > 50, "the scene must have a real overlap"
    owned = {k: float(np.nansum(own.weights[k] * maps[k].area_m2)) for k in maps}
    union = feet["a"].union(feet["b"]).area
    assert sum(owned.values()) == pytest.approx(union, rel=2e-3), "owned parts tile the seen floor once"
    # Both cameras give up part of the overlap (each is finer somewhere).
    assert 0 < owned["a"] < feet["a"].area and 0 < owned["b"] < feet["b"].area
    bounds = union_bounds = feet["a"].union(feet["b"]).bounds
    raster = owner_raster(maps, bounds, 0.25)
    areas = raster.owned_area_m2()
    assert sum(areas.values()) == pytest.approx(union, rel=0.02)
    assert areas["a"] == pytest.approx(owned["a"], rel=0.03)
    assert areas["b"] == pytest.approx(owned["b"], rel=0.03)
    assert union_bounds  # raster covers the union's box


# ---------------------------------------------------------------- PETS 2009, real calibration and annotations

def _pets_points() -> dict[str, dict]:
    path = SHARED_DATA / "video" / "vtest_points.json"
    if not path.exists():
        pytest.skip(f"PETS foot points not found at {path} (shared dev data)")
    return json.loads(path.read_text())


def test_pets_zones_count_the_same_people_on_the_ground_and_in_the_image():
    """Foot point → ground → zone must agree with zone → image → foot point, frame by frame."""
    from crowdsafe.config.site import load_site
    from crowdsafe.geometry.site import build_site_geometry

    points = _pets_points()
    geo = build_site_geometry(load_site(DEMO_SITE))
    fit = geo.cameras["view001"].fit
    inverse = np.linalg.inv(fit.matrix)
    image_zones = {}
    for zid, zg in geo.zones.items():
        vertices = apply(inverse, np.asarray(zg.zone.polygon, float))
        assert np.all(np.isfinite(vertices)), f"zone {zid} must lie in front of the camera"
        image_zones[zid] = shapely.Polygon(vertices)
    disagree = total = 0
    per_zone = dict.fromkeys(geo.zones, 0)
    for frame in points.values():
        feet = np.asarray(frame["points"], float)
        ground = shapely.points(apply(fit.matrix, feet))
        image = shapely.points(feet)
        for zid, zg in geo.zones.items():
            on_ground = shapely.contains(zg.polygon, ground)
            in_image = shapely.contains(image_zones[zid], image)
            disagree += int((on_ground != in_image).sum())
            total += len(feet)
            per_zone[zid] += int(on_ground.sum())
    assert disagree == 0, f"{disagree} of {total} point/zone tests disagree"
    n_people = sum(f["count"] for f in points.values())
    assert per_zone["walkway"] > 0.8 * n_people, "the walkway is where the people walk"
    assert sum(per_zone.values()) <= n_people, "zones do not overlap"


def test_pets_camera_pose_and_person_heights_match_the_real_camera():
    """The focal/pose estimate (square pixels, principal point at the image centre) against the
    Tsai calibration (focal 1195 px, camera 7.07 m above the floor), and the pixel height of a
    1.7 m person against annotated box heights (MOT15 gt.txt rows: frame 1 ids 9, 15, 19 and
    frame 41 id 13; boxes include some slack and people differ in height, hence 15 %)."""
    from crowdsafe.config.site import load_site
    from crowdsafe.geometry.pose import person_height_px

    cam = load_site(DEMO_SITE).cameras[0]
    fit = fit_homography(cam.calibration.image_points, cam.calibration.ground_points)
    estimated = pose_from_homography(fit.matrix, (768, 576))
    assert estimated is not None and estimated.focal_estimated
    assert estimated.K[0, 0] == pytest.approx(1195.0, rel=0.03)
    assert estimated.height_m == pytest.approx(7.07, rel=0.03)
    feet_and_box_heights = [((514.5, 233.2), 75.2), ((274.5, 307.7), 88.7), ((654.2, 323.1), 81.1),
                            ((752.5, 396.0), 116.0)]
    for foot, box_h in feet_and_box_heights:
        ground = apply(fit.matrix, np.array([foot]))
        assert person_height_px(estimated, ground)[0] == pytest.approx(box_h, rel=0.15)
