"""Overlapping cameras: every spot of floor is owned by exactly one camera, so no one counts twice.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.ownership``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import shapely

from crowdsafe.geometry.ground_map import GroundMap
from crowdsafe.geometry.homography import apply


def resolution_at(ground_map: GroundMap, ground_points: np.ndarray) -> np.ndarray:
    """m² of floor per density cell of this camera at (N,2) ground points; inf where unseen.

    H is scaled so w > 0 on the floor; its inverse then has w > 0 exactly for floor points in
    front of the camera, so points behind it map to NaN and are unseen.
    """
    pts = np.asarray(ground_points, float).reshape(-1, 2)
    image = apply(np.linalg.inv(ground_map.image_to_ground), pts)
    r, c, ok = ground_map.cell_of(image)
    out = np.full(len(pts), np.inf)
    out[ok] = ground_map.area_m2[r[ok], c[ok]]
    return out


def _owners(maps: Mapping[str, GroundMap], ground_points: np.ndarray) -> np.ndarray:
    """Index (in ``maps`` order) of the owning camera at each ground point; -1 where none sees it."""
    res = np.stack([resolution_at(gm, ground_points) for gm in maps.values()])
    owner = np.argmin(res, axis=0)  # ties: first camera in site order
    owner[~np.isfinite(res.min(axis=0))] = -1
    return owner


def _subsample_offsets(cell: int, samples: int) -> np.ndarray:
    s = (np.arange(samples) + 0.5) * cell / samples
    du, dv = np.meshgrid(s, s)
    return np.column_stack([du.ravel(), dv.ravel()])


@dataclass(frozen=True)
class Ownership:
    """Per camera, the (rows, cols) fraction of each density cell's floor that camera owns."""

    weights: dict[str, np.ndarray]
    footprints: dict[str, shapely.Geometry]

    def seen(self) -> shapely.Geometry:
        """All floor any camera sees."""
        return shapely.union_all(list(self.footprints.values()))


def assign_ownership(maps: Mapping[str, GroundMap], footprints: Mapping[str, shapely.Geometry],
                     cells: Mapping[str, np.ndarray], *, samples: int = 4) -> Ownership:
    """Ownership weights for every camera's cells given their ground maps, footprints and cell polygons."""
    ids = list(maps)
    weights: dict[str, np.ndarray] = {}
    for k, cam in enumerate(ids):
        gm = maps[cam]
        weight = gm.valid.astype(np.float64)
        others = [footprints[o] for o in ids if o != cam and not footprints[o].is_empty]
        if others:
            overlap = shapely.union_all(others)
            shapely.prepare(overlap)
            rows, cols = np.nonzero(gm.valid)
            shared = shapely.intersects(overlap, cells[cam][rows, cols])
            rows, cols = rows[shared], cols[shared]
            if rows.size:
                offsets = _subsample_offsets(gm.cell, samples)
                corners = np.column_stack([cols * gm.cell, rows * gm.cell]).astype(float)
                image_pts = (corners[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
                ground_pts = apply(gm.image_to_ground, image_pts)
                owner = _owners(maps, ground_pts).reshape(rows.size, -1)
                weight[rows, cols] = (owner == k).mean(axis=1)
        weights[cam] = weight
    return Ownership(weights=weights, footprints=dict(footprints))


@dataclass(frozen=True)
class OwnerRaster:
    """The site floor on a regular grid: which camera owns each square (-1: nobody sees it)."""

    origin: tuple[float, float]  # ground (x, y) of the first square's lower-left corner
    step_m: float
    owner: np.ndarray  # (ny, nx) int, row 0 at origin y
    camera_ids: tuple[str, ...]

    def owned_area_m2(self) -> dict[str, float]:
        return {cam: float((self.owner == k).sum()) * self.step_m**2 for k, cam in enumerate(self.camera_ids)}


def owner_raster(maps: Mapping[str, GroundMap], bounds: tuple[float, float, float, float],
                 step_m: float = 0.25) -> OwnerRaster:
    """Rasterise ownership over ground ``bounds`` (xmin, ymin, xmax, ymax) at square centres."""
    xmin, ymin, xmax, ymax = bounds
    nx, ny = max(int(np.ceil((xmax - xmin) / step_m)), 1), max(int(np.ceil((ymax - ymin) / step_m)), 1)
    xs = xmin + (np.arange(nx) + 0.5) * step_m
    ys = ymin + (np.arange(ny) + 0.5) * step_m
    gx, gy = np.meshgrid(xs, ys)
    owner = _owners(maps, np.column_stack([gx.ravel(), gy.ravel()])).reshape(ny, nx)
    return OwnerRaster(origin=(xmin, ymin), step_m=step_m, owner=owner, camera_ids=tuple(maps))
