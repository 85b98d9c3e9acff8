"""Synthetic pinhole cameras and exact density maps, shared by the geometry, zone, head-plane,
background-density and tuning tests (a test module never imports another one)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

_erf = np.vectorize(math.erf)
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


def look_at(centre: tuple[float, float, float], target: tuple[float, float, float], focal: float,
            size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(ground→image homography, 3x4 projection) of a pinhole camera at ``centre`` looking at ``target``."""
    c, tgt = np.array(centre, float), np.array(target, float)
    z = (tgt - c) / np.linalg.norm(tgt - c)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    t = -R @ c
    K = np.array([[focal, 0, size[0] / 2], [0, focal, size[1] / 2], [0, 0, 1.0]])
    P = K @ np.column_stack([R, t])
    return P[:, [0, 1, 3]], P


def image_to_ground(ground_to_image: np.ndarray) -> np.ndarray:
    return np.linalg.inv(ground_to_image)


def render_density(size: tuple[int, int], image_points: np.ndarray, masses: np.ndarray | None = None,
                   sigma: float = 3.0, cell: int = 8, window: int = 3) -> np.ndarray:
    """Density map (rows, cols) with a Gaussian blob of exact ``mass`` per point, cut to ±window cells.

    The blob is integrated over each cell with erf and renormalised over its window, so each
    person contributes exactly its mass to cells within ``window`` of its own cell.
    """
    width, height = size
    rows, cols = height // cell, width // cell
    density = np.zeros((rows, cols))
    masses = np.ones(len(image_points)) if masses is None else masses
    for (u, v), m in zip(image_points, masses, strict=True):
        r0, c0 = int(v // cell), int(u // cell)
        rs = np.arange(max(r0 - window, 0), min(r0 + window + 1, rows))
        cs = np.arange(max(c0 - window, 0), min(c0 + window + 1, cols))
        ex = _erf((np.append(cs, cs[-1] + 1) * cell - u) / (sigma * math.sqrt(2)))
        ey = _erf((np.append(rs, rs[-1] + 1) * cell - v) / (sigma * math.sqrt(2)))
        block = np.outer(np.diff(ey), np.diff(ex))
        density[np.ix_(rs, cs)] += m * block / block.sum()
    return density


def blob_cells(image_point: np.ndarray, size: tuple[int, int], cell: int = 8, window: int = 3
               ) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = size[1] // cell, size[0] // cell
    r0, c0 = int(image_point[1] // cell), int(image_point[0] // cell)
    rs = np.arange(max(r0 - window, 0), min(r0 + window + 1, rows))
    cs = np.arange(max(c0 - window, 0), min(c0 + window + 1, cols))
    return np.meshgrid(rs, cs, indexing="ij")


def at_height(projection: np.ndarray, height_m: float) -> np.ndarray:
    """Ground (x, y) → image homography of the points ``height_m`` above the floor, from a 3x4 P."""
    g2i = projection[:, [0, 1, 3]].copy()
    g2i[:, 2] += height_m * projection[:, 2]
    return g2i


SIZE = (640, 480)
CAM_A, P_A = look_at((0.0, -12.0, 7.0), (0.0, 4.0, 0.0), 700.0, SIZE)
CAM_B, P_B = look_at((14.0, 6.0, 9.0), (1.0, 3.0, 0.0), 600.0, SIZE)


#: Where the counter puts people in these cameras: at head height (the site default, 1.6 m).
HEAD_A, HEAD_B = at_height(P_A, 1.6), at_height(P_B, 1.6)
