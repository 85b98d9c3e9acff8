"""How much floor each density cell sees, and how tall a person looks there.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.ground_map``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.pose import CameraPose, person_height_px

CELL = 8
DEFAULT_MAX_CELL_AREA_M2 = 25.0
PERSON_HEIGHT_M = 1.7


@dataclass(frozen=True)
class GroundMap:
    """Per density cell of one camera: floor quad, its area, validity, person height in pixels."""

    image_to_ground: np.ndarray  # 3x3: image -> ground (x, y) under the density plane
    image_size: tuple[int, int]  # (width, height) pixels
    cell: int
    corners: np.ndarray  # (rows+1, cols+1, 2) ground metres of cell corners; NaN beyond the horizon
    area_m2: np.ndarray  # (rows, cols) floor area per cell; NaN where masked
    valid: np.ndarray  # (rows, cols) bool
    person_px: np.ndarray  # (rows, cols) pixel height of a 1.7 m person at the cell centre; NaN unknown
    pose: CameraPose | None
    plane_height_m: float = 0.0  # height above the floor of the plane the density cells are mapped through

    @property
    def ground_to_image(self) -> np.ndarray:
        """Ground (x, y) → image pixel of the point ``plane_height_m`` above it (w > 0 in front)."""
        inv = np.linalg.inv(self.image_to_ground)
        return inv / np.abs(inv[2]).max()

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape  # type: ignore[return-value]

    def cell_polygons(self) -> np.ndarray:
        """(rows, cols) array of shapely Polygons on the ground; None where masked."""
        rows, cols = self.shape
        c = self.corners
        quads = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]], axis=2)  # (rows, cols, 4, 2)
        out = np.full((rows, cols), None, dtype=object)
        out[self.valid] = shapely.polygons(quads[self.valid])
        return out

    def cell_centres_ground(self) -> np.ndarray:
        """(rows, cols, 2) ground position of each cell's image centre (NaN beyond the horizon)."""
        rows, cols = self.shape
        v, u = np.mgrid[0:rows, 0:cols]
        centres = np.stack([(u + 0.5) * self.cell, (v + 0.5) * self.cell], axis=-1).astype(float)
        return apply(self.image_to_ground, centres)

    def m2_per_pixel_range(self) -> tuple[float, float]:
        areas = self.area_m2[self.valid] / self.cell**2
        return (float(areas.min()), float(areas.max())) if areas.size else (float("nan"), float("nan"))

    def cell_of(self, image_points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and 'inside a valid cell' for (N,2) image points."""
        pts = np.asarray(image_points, float).reshape(-1, 2)
        rows, cols = self.shape
        with np.errstate(invalid="ignore"):
            col = np.floor(pts[:, 0] / self.cell)
            row = np.floor(pts[:, 1] / self.cell)
        ok = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        r, c = np.where(ok, row, 0).astype(int), np.where(ok, col, 0).astype(int)
        ok &= self.valid[r, c]
        return r, c, ok


def shoelace(quads: np.ndarray) -> np.ndarray:
    """Unsigned area of polygons given as (..., n, 2) vertex arrays in order."""
    x, y = quads[..., 0], quads[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1))


def build_ground_map(image_to_ground: np.ndarray, image_size: tuple[int, int], *, cell: int = CELL,
                     max_cell_area_m2: float = DEFAULT_MAX_CELL_AREA_M2,
                     pose: CameraPose | None = None, person_height_m: float = PERSON_HEIGHT_M,
                     plane_height_m: float = 0.0) -> GroundMap:
    """Ground map of one camera for a (width, height) image and the counter's cell size.

    Cells are the counter's: rows = height // cell, cols = width // cell (a partial cell at the
    right/bottom edge has no density value and is left out). ``pose`` (see ``geometry.pose``)
    gives person heights; without it they are NaN. ``image_to_ground`` must already map through
    the plane at ``plane_height_m`` (recorded here so every consumer knows which plane it is).
    """
    width, height = image_size
    rows, cols = height // cell, width // cell
    v, u = np.mgrid[0:rows + 1, 0:cols + 1]
    corners = apply(image_to_ground, np.stack([u * cell, v * cell], axis=-1).astype(float))
    quads = np.stack([corners[:-1, :-1], corners[:-1, 1:], corners[1:, 1:], corners[1:, :-1]], axis=2)
    area = shoelace(quads)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(area) & (area > 0) & (area <= max_cell_area_m2)
    area = np.where(valid, area, np.nan)
    person = np.full((rows, cols), np.nan)
    gm = GroundMap(image_to_ground=image_to_ground, image_size=(width, height), cell=cell, corners=corners,
                   area_m2=area, valid=valid, person_px=person, pose=pose, plane_height_m=plane_height_m)
    if pose is not None and valid.any():
        centres = gm.cell_centres_ground()
        person[valid] = person_height_px(pose, centres[valid], person_height_m)
    return gm
