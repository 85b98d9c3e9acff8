"""Which density cells of a camera any reading uses: its zones' weighted cells and its lines' band.

Computed once at start-up, so each camera can infer only the image region they span
(``counting.region``). A zone cell counts only where this camera owns some of its floor
(``zone_weights`` is coverage x ownership): a cell owned by another camera never reaches a
reading of this one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crowdsafe.geometry.lines import LinePlan
from crowdsafe.geometry.site import CameraGeometry

#: Cells around each line point read by its flux: ``measure.flow`` interpolates the density
#: bilinearly between cell centres, so a point touches its own cell and the next one.
LINE_BAND_CELLS = 1


def line_cells(shape: tuple[int, int], cell: int, a: tuple[float, float], b: tuple[float, float],
               band: int = LINE_BAND_CELLS) -> np.ndarray:
    """(rows, cols) mask of the cells the flux through the image segment a→b interpolates from."""
    rows, cols = shape
    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    t = np.linspace(0.0, 1.0, max(int(np.ceil(length)), 1) + 1)
    xs = np.floor((a[0] + t * (b[0] - a[0])) / cell).astype(int)
    ys = np.floor((a[1] + t * (b[1] - a[1])) / cell).astype(int)
    mask = np.zeros(shape, bool)
    for dy in range(-band, band + 1):
        for dx in range(-band, band + 1):
            mask[np.clip(ys + dy, 0, rows - 1), np.clip(xs + dx, 0, cols - 1)] = True
    return mask


def needed_cells(camera: CameraGeometry, plans: Iterable[LinePlan]) -> np.ndarray:
    """(rows, cols) mask of the cells some zone reading or line flux of this camera reads."""
    shape = camera.ground_map.shape
    needed = np.zeros(shape, bool)
    for weights in camera.zone_weights.values():
        needed |= weights > 0
    for plan in plans:
        if plan.camera_id == camera.camera_id:
            needed |= line_cells(shape, camera.ground_map.cell, plan.a_px, plan.b_px)
    return needed
