"""A site's geometry, computed once: per camera the fit, ground map, ownership and zone weights.

Everything per frame is then a weighted sum over density cells (``measure.zones``); all the
polygon work happens here, at start-up, where its cost does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely

from crowdsafe.config.site import Camera, Site, SiteError, Zone
from crowdsafe.geometry.ground_map import CELL, GroundMap, build_ground_map
from crowdsafe.geometry.homography import CalibrationError, HomographyFit, fit_homography
from crowdsafe.geometry.ownership import Ownership, assign_ownership
from crowdsafe.geometry.pose import CameraPose, plane_homography, pose_from_homography
from crowdsafe.geometry.zones import footprint, zone_coverage


@dataclass(frozen=True)
class CameraGeometry:
    camera_id: str
    fit: HomographyFit
    ground_map: GroundMap
    footprint: shapely.Geometry
    ownership: np.ndarray  # (rows, cols) fraction of each cell's floor this camera owns
    zone_weights: dict[str, np.ndarray]  # zone id -> coverage x ownership, (rows, cols)

    @cached_property
    def zone_owned_m2(self) -> dict[str, float]:
        """Floor of each zone this camera owns (what is unseen if this camera drops out)."""
        area = np.nan_to_num(self.ground_map.area_m2)
        return {zid: float(np.sum(w * area)) for zid, w in self.zone_weights.items()}


@dataclass(frozen=True)
class ZoneGeometry:
    zone: Zone
    polygon: shapely.Polygon
    area_m2: float
    covered_m2: float  # part of the zone seen by at least one camera

    @property
    def coverage_pct(self) -> float:
        return 100.0 * self.covered_m2 / self.area_m2 if self.area_m2 > 0 else 0.0


@dataclass(frozen=True)
class SiteGeometry:
    site: Site
    cameras: dict[str, CameraGeometry]
    zones: dict[str, ZoneGeometry]


def fit_camera(camera: Camera, index: int) -> HomographyFit:
    """The camera's floor homography; a CalibrationError becomes a SiteError naming the field."""
    cal = camera.calibration
    try:
        return fit_homography(cal.image_points, cal.ground_points, ransac_threshold_m=cal.ransac_threshold_m)
    except CalibrationError as exc:
        raise SiteError([f"cameras[{index}].calibration.{exc}"]) from None


#: A camera must be at least this far above the density plane: closer, the plane is seen edge-on.
MIN_CLEARANCE_M = 0.5


def camera_pose(camera: Camera, fit: HomographyFit, image_size: tuple[int, int]) -> CameraPose | None:
    """The camera's pose from its floor fit (and focal_px when given); None when it cannot be known."""
    cal = camera.calibration
    return pose_from_homography(fit.matrix, image_size, focal_px=cal.focal_px,
                                principal_point=cal.principal_point,
                                floor_image_point=tuple(fit.image_points.mean(axis=0)))


def pose_problem(camera: Camera, index: int, pose: CameraPose | None, head_height_m: float) -> str | None:
    """Why this camera's density cannot be placed at head height, or None when it can.

    Mapping head-height density through the floor puts people metres behind where they stand
    (7.6 m median on the demo camera), so an unknown pose is refused unless the site accepts
    floor mapping for that camera explicitly.
    """
    if head_height_m == 0 or camera.accept_floor_mapping:
        return None
    path = f"cameras[{index}].calibration"
    if pose is None:
        return (f"{path}: camera pose unknown: the focal length cannot be estimated from these points, so "
                f"density at head height ({head_height_m} m) cannot be placed on the floor; give focal_px "
                f"(and principal_point if it is not the image centre), or set cameras[{index}]."
                "accept_floor_mapping: true to map it at the floor (people then land metres off)")
    if pose.height_m < head_height_m + MIN_CLEARANCE_M:
        return (f"{path}: the camera is {pose.height_m:.2f} m above the floor by its pose, not above the "
                f"head plane ({head_height_m} m) by at least {MIN_CLEARANCE_M} m; check the points and "
                "focal_px, or set head_height_m for this camera")
    return None


def camera_ground_map(camera: Camera, fit: HomographyFit, image_size: tuple[int, int],
                      pose: CameraPose | None, cell: int = CELL, head_height_m: float = 0.0) -> GroundMap:
    """Cells mapped through the plane at ``head_height_m`` (the floor when the pose is unknown)."""
    plane = head_height_m if pose is not None else 0.0
    matrix = fit.matrix if plane == 0 or pose is None else plane_homography(pose, fit.matrix, plane)
    return build_ground_map(matrix, image_size, cell=cell,
                            max_cell_area_m2=camera.calibration.max_cell_area_m2, pose=pose,
                            plane_height_m=plane)


def build_site_geometry(site: Site, image_sizes: Mapping[str, tuple[int, int]] | None = None, *,
                        cell: int = CELL, ownership_samples: int = 4) -> SiteGeometry:
    """Fit every camera, map its cells to the floor, share overlaps, weight cells per zone.

    ``image_sizes`` ((width, height) per camera id) fills in cameras whose calibration has no
    ``image_size``; a camera with neither is an error, since cell geometry depends on it.
    """
    image_sizes = dict(image_sizes or {})
    fits: dict[str, HomographyFit] = {}
    maps: dict[str, GroundMap] = {}
    problems: list[str] = []
    for i, cam in enumerate(site.cameras):
        size = image_sizes.get(cam.id) or cam.calibration.image_size
        try:
            fits[cam.id] = fit_camera(cam, i)
        except SiteError as exc:
            problems += exc.problems
            continue
        if size is None:
            problems.append(f"cameras[{i}].calibration.image_size: unknown; give [width, height] of the "
                            "frames")
            continue
        head = site.head_height_for(cam)
        pose = camera_pose(cam, fits[cam.id], tuple(size))
        problem = pose_problem(cam, i, pose, head)
        if problem is not None:
            problems.append(problem)
            continue
        maps[cam.id] = camera_ground_map(cam, fits[cam.id], tuple(size), pose, cell, head)
        if not maps[cam.id].valid.any():
            problems.append(f"cameras[{i}].calibration: no density cell of the image maps to usable floor "
                            f"(all beyond the horizon or larger than {cam.calibration.max_cell_area_m2} m²)")
    if problems:
        raise SiteError(problems)
    cells = {cid: gm.cell_polygons() for cid, gm in maps.items()}
    feet = {cid: footprint(gm, cells[cid]) for cid, gm in maps.items()}
    owned: Ownership = assign_ownership(maps, feet, cells, samples=ownership_samples)
    seen = owned.seen()
    zones: dict[str, ZoneGeometry] = {}
    for zone in site.zones:
        poly = shapely.Polygon(zone.polygon)
        zones[zone.id] = ZoneGeometry(zone=zone, polygon=poly, area_m2=float(poly.area),
                                      covered_m2=float(shapely.intersection(poly, seen).area))
    cameras = {}
    for cid, gm in maps.items():
        zone_weights = {zid: zone_coverage(gm, zg.polygon, cells[cid]) * owned.weights[cid]
                        for zid, zg in zones.items()}
        cameras[cid] = CameraGeometry(camera_id=cid, fit=fits[cid], ground_map=gm, footprint=feet[cid],
                                      ownership=owned.weights[cid], zone_weights=zone_weights)
    return SiteGeometry(site=site, cameras=cameras, zones=zones)
