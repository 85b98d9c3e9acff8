"""Infer only the part of a frame that a camera's zones and lines read.

A camera's readings are weighted sums over density cells: cells no zone weighs and no line
samples never reach a reading, so inferring them is wasted work. The network is fully
convolutional, so a cell depends only on the pixels within its receptive field: a crop of the
needed cells plus a context margin gives the same cells as the whole frame, to within the
difference measured by ``benchmarks/roi_margin.py`` (benchmarks/results/roi-margin-2026-12-06.json
chose the margin). As in ``DensityCounter._tiled``, the margin's cells are discarded and the
kept core is pasted into a full-size zero map, so every later step (zones, lines, background
subtraction, health) still sees one map per frame at the frame's size.

What this changes: the map, hence the camera's frame total, holds only the people in the
region (docs/counting.md, "Only where it matters").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsafe.counting.counter import Counts, DensityResult, validate_image
from crowdsafe.counting.graph import STRIDE

#: Context kept around the needed cells and discarded after inference (multiple of STRIDE):
#: the smallest margin measured whose region counts stayed within 0.5 % of full-frame ones on
#: real frames for both models (largest difference 0.11 % sparse, 0.02 % dense; 96 px: 0.62 %
#: sparse), benchmarks/results/roi-margin-2026-12-06.json. The tiles' 64 px ``TILE_MARGIN``
#: was up to 2.9 % off there.
REGION_MARGIN = 112
#: A crop with at least this share of the frame's pixels saves too little for the lost
#: context at its edges: the whole frame is inferred instead.
FULL_FRAME_SHARE = 0.9


@dataclass(frozen=True)
class Box:
    """Pixel rectangle [x0, x1) x [y0, y1); x0 and y0 lie on the density grid."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def pixels(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def cells(self) -> tuple[slice, slice]:
        """The density cells (rows, cols) whose pixels lie inside the box."""
        return slice(self.y0 // STRIDE, self.y1 // STRIDE), slice(self.x0 // STRIDE, self.x1 // STRIDE)


def needed_box(needed: np.ndarray) -> Box | None:
    """Bounding box, in pixels, of the ``True`` cells of a (rows, cols) mask; None when none is."""
    rows, cols = np.nonzero(needed)
    if rows.size == 0:
        return None
    return Box(int(cols.min()) * STRIDE, int(rows.min()) * STRIDE,
               (int(cols.max()) + 1) * STRIDE, (int(rows.max()) + 1) * STRIDE)


def with_margin(core: Box, margin: int, width: int, height: int) -> Box:
    """The core grown by ``margin`` on every side, kept on the grid and inside the frame."""
    if margin % STRIDE:
        raise ValueError(f"margin must be a multiple of {STRIDE} pixels, got {margin}")
    return Box(max(core.x0 - margin, 0), max(core.y0 - margin, 0),
               min(core.x1 + margin, width), min(core.y1 + margin, height))


def plan_region(needed: np.ndarray, image_size: tuple[int, int], margin: int = REGION_MARGIN,
                full_share: float = FULL_FRAME_SHARE) -> tuple[Box, Box] | None:
    """(core, crop) for a camera, or None when the whole frame must or might as well be inferred.

    ``image_size`` is (width, height). No needed cell means the camera serves no zone or line;
    its frame total is then all it reports, so the whole frame is counted.
    """
    width, height = image_size
    core = needed_box(needed)
    if core is None:
        return None
    grid_w, grid_h = width // STRIDE * STRIDE, height // STRIDE * STRIDE
    core = Box(core.x0, core.y0, min(core.x1, grid_w), min(core.y1, grid_h))
    crop = with_margin(core, margin, width, height)
    if crop.pixels >= full_share * width * height:
        return None
    return core, crop


class RegionCounter:
    """Counts the crop of each frame with the camera's own counter; the rest of the map is zero."""

    def __init__(self, inner: Counts, core: Box, crop: Box) -> None:
        self.inner = inner
        self.core = core
        self.crop = crop

    @property
    def engine(self) -> object | None:
        return getattr(self.inner, "engine", None)

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        image = validate_image(image_bgr)
        h, w = image.shape[:2]
        if self.crop.x1 > w or self.crop.y1 > h:  # not the calibrated size: no region to trust
            return self.inner.count(image)
        c = self.crop
        part = self.inner.count(np.ascontiguousarray(image[c.y0:c.y1, c.x0:c.x1]))
        density = np.zeros((h // STRIDE, w // STRIDE), np.float32)
        rows, cols = self.core.cells()
        oy, ox = c.y0 // STRIDE, c.x0 // STRIDE
        density[rows, cols] = part.density[rows.start - oy:rows.stop - oy, cols.start - ox:cols.stop - ox]
        interval = part.interval
        if interval is not None:  # the crop's interval, scaled to the share kept
            ratio = float(density.sum(dtype=np.float64)) / part.count if part.count > 0 else 1.0
            interval = (interval[0] * ratio, interval[1] * ratio)
        return DensityResult(density=density, image_height=h, image_width=w, cell=part.cell,
                             model=part.model, interval=interval)
