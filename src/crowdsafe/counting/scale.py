"""Scale normalisation: resize bands of rows so people appear at the size the model learnt.

Why and how: docs/design-notes.md, ``crowdsafe.counting.scale``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.counter import MIN_SIDE, Counts, DensityResult, ImageError, validate_image
from crowdsafe.counting.graph import STRIDE
from crowdsafe.counting.intervals import IntervalTable, load_tables

#: Pixel heights of standing people the model counts at native scale: the range it saw in
#: training. Sparse: ShanghaiTech B train, people mostly 100-250 px tall in 1024x768 frames
#: (read by eye off train images; see MODEL_CARD.md). Rows whose people are inside the range
#: are not resized. The dense model saw every scale in ShanghaiTech A, so it has no single
#: trained height and is never rescaled.
TRAINED_PERSON_PX: dict[str, tuple[float, float]] = {"sparse": (100.0, 250.0)}
MIN_SCALE = 0.5
MAX_SCALE = 3.0
#: Rows whose scales differ by less than this factor share a band.
BAND_RATIO = 1.25
#: Scales within this factor of 1 are not worth a resize.
SAME_SCALE = 1.1
#: Smallest band, in pixel rows (a multiple of the 8-pixel cell).
MIN_BAND_ROWS = 32
#: Rows of context counted with each band and then discarded (a multiple of 8).
CONTEXT_ROWS = 64


@dataclass(frozen=True)
class Band:
    """Pixel rows ``[top, bottom)`` (multiples of 8) counted after resizing by ``scale``."""

    top: int
    bottom: int
    scale: float


def person_px_per_row(person_px_cells: np.ndarray, image_height: int) -> np.ndarray:
    """Per pixel row: the median person height of the cell row it falls in; NaN unknown.

    Rows with no known height (beyond the horizon or outside the calibrated ground) take the
    nearest known row's value, so a band plan covers the whole image.
    """
    cells = np.asarray(person_px_cells, np.float64)
    if cells.ndim != 2:
        raise ValueError("person heights must be a (rows, cols) cell grid")
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(cells) & (cells > 0), cells, np.nan)
        known = ~np.all(np.isnan(finite), axis=1)
        medians = np.full(cells.shape[0], np.nan)
        medians[known] = np.nanmedian(finite[known], axis=1)
    if not known.any():
        raise ValueError("calibration gives no person height inside the image")
    idx = np.arange(cells.shape[0])
    medians = np.interp(idx, idx[known], medians[known])  # constant beyond the known rows
    rows = np.minimum(np.arange(image_height) // STRIDE, cells.shape[0] - 1)
    return medians[rows]


def person_px_from_points(points: list[tuple[float, float]] | np.ndarray, image_height: int) -> np.ndarray:
    """Per pixel row, from a few measured people: ``[[foot row, height px], ...]``.

    For cameras calibrated by hand (mark a few people's head and feet) rather than by a
    ground homography. Heights are interpolated piecewise-linearly between the measured rows
    (a steep camera foreshortens near people, so height is not linear in the row) and
    extrapolated along the end segments, never below 4 pixels.
    """
    try:
        pts = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        raise ValueError("person heights: expected [[foot row, height px], ...]") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError("need at least two [foot row, person height px] pairs")
    if not np.all(np.isfinite(pts)) or np.any(pts[:, 1] <= 0):
        raise ValueError("person heights must be positive numbers")
    rows_known = np.unique(pts[:, 0])
    if rows_known.size < 2:
        raise ValueError("need person heights at two different rows at least")
    heights = np.array([pts[pts[:, 0] == r, 1].mean() for r in rows_known])
    y = np.arange(image_height, dtype=np.float64)
    out = np.interp(y, rows_known, heights)
    lo_slope = (heights[1] - heights[0]) / (rows_known[1] - rows_known[0])
    hi_slope = (heights[-1] - heights[-2]) / (rows_known[-1] - rows_known[-2])
    out = np.where(y < rows_known[0], heights[0] + (y - rows_known[0]) * lo_slope, out)
    out = np.where(y > rows_known[-1], heights[-1] + (y - rows_known[-1]) * hi_slope, out)
    return np.maximum(out, 4.0)


def load_person_heights(path: Path) -> tuple[int, np.ndarray]:
    """A hand calibration file: ``{"image_height": H, "points": [[foot row, height px], ...]}``.

    Returns the image height and the per-row heights; ValueError names what is wrong.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read person heights ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("image_height"), int) \
            or isinstance(data.get("image_height"), bool) or not MIN_SIDE <= data["image_height"] <= 20000:
        raise ValueError(f"{path}: expected {{\"image_height\": <rows>, \"points\": [[row, px], ...]}}")
    try:
        return data["image_height"], person_px_from_points(data.get("points"), data["image_height"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def wanted_scales(heights: np.ndarray, target_px: float | tuple[float, float]) -> np.ndarray:
    """Per row: the resize that brings its people into the trained height range (1 inside it)."""
    lo, hi = (target_px, target_px) if isinstance(target_px, int | float) else target_px
    if not 0 < lo <= hi:
        raise ValueError("the target height range must be positive and ordered")
    return np.where(heights < lo, lo / heights, np.where(heights > hi, hi / heights, 1.0))


def plan_bands(person_px_rows: np.ndarray, target_px: float | tuple[float, float], *,
               min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE,
               ratio: float = BAND_RATIO, min_rows: int = MIN_BAND_ROWS) -> list[Band]:
    """Bands of rows whose wanted scale (see :func:`wanted_scales`) stays within ``ratio``.

    ``target_px`` is one height or a ``(lo, hi)`` range the model counts well: rows whose
    people are already inside the range are left as they are.

    Band edges fall on the 8-pixel grid (the last band ends at the last full cell). A band's
    scale is the geometric mean of its rows' clamped scales, snapped to 1 within
    ``SAME_SCALE``.
    """
    heights = np.asarray(person_px_rows, np.float64)
    if heights.ndim != 1 or heights.size < MIN_SIDE:
        raise ValueError("need one person height per image row")
    if not np.all(np.isfinite(heights) & (heights > 0)):
        raise ValueError("person heights must be positive and finite on every row")
    if not 0 < min_scale <= 1 <= max_scale:
        raise ValueError("need min_scale <= 1 <= max_scale")
    end = heights.size // STRIDE * STRIDE
    cell_scale = np.clip(wanted_scales(heights[:end].reshape(-1, STRIDE).mean(axis=1), target_px),
                         min_scale, max_scale)
    step = max(min_rows // STRIDE, 1)
    bands: list[Band] = []
    start = 0
    while start < cell_scale.size:
        stop = min(start + step, cell_scale.size)
        while stop < cell_scale.size:
            window = cell_scale[start:stop + 1]
            if window.max() / window.min() > ratio:
                break
            stop += 1
        if cell_scale.size - stop < step:  # a sliver left over joins this band
            stop = cell_scale.size
        scale = float(np.exp(np.log(cell_scale[start:stop]).mean()))
        if 1 / SAME_SCALE <= scale <= SAME_SCALE:
            scale = 1.0
        bands.append(Band(start * STRIDE, stop * STRIDE, scale))
        start = stop
    return _merge_equal(bands)


def _merge_equal(bands: list[Band]) -> list[Band]:
    merged: list[Band] = []
    for band in bands:
        if merged and merged[-1].scale == band.scale == 1.0:
            merged[-1] = Band(merged[-1].top, band.bottom, 1.0)
        else:
            merged.append(band)
    return merged


def _transfer(n_src: int, n_dst: int, src_cell: float) -> np.ndarray:
    """(n_dst, n_src): the share of each source cell's mass falling in each 8-px destination cell.

    Source cells are ``src_cell`` destination pixels wide; shares are interval overlaps, so
    mass moves exactly (no interpolation kernel that could grow or shrink a lone peak).
    """
    s0 = np.arange(n_src) * src_cell
    d0 = np.arange(n_dst) * float(STRIDE)
    overlap = np.minimum(d0[:, None] + STRIDE, s0[None] + src_cell) - np.maximum(d0[:, None], s0[None])
    return np.clip(overlap, 0.0, None) / src_cell


def resample_density(density: np.ndarray, rows: int, cols: int, cell_y: float | None = None,
                     cell_x: float | None = None) -> np.ndarray:
    """A density map moved onto another grid of 8-px cells, people conserved.

    ``cell_y``/``cell_x``: how many destination pixels one source cell spans (by default the
    two grids cover the same extent). Mass of source cells beyond the destination grid is
    dropped, as the counter itself drops partial cells at the right and bottom edges.
    """
    src = np.asarray(density, np.float64)
    cell_y = cell_y if cell_y is not None else STRIDE * rows / src.shape[0]
    cell_x = cell_x if cell_x is not None else STRIDE * cols / src.shape[1]
    out = _transfer(src.shape[0], rows, cell_y) @ src @ _transfer(src.shape[1], cols, cell_x).T
    return out.astype(np.float32)


class ScaleNormalisedCounter:
    """Counts each band at the trained scale; the density comes back on the image's own grid."""

    def __init__(self, counter: Counts, bands: list[Band], model: str = "sparse",
                 intervals: IntervalTable | None = None, context: int = CONTEXT_ROWS) -> None:
        if not bands or bands[0].top != 0 or any(a.bottom != b.top for a, b in pairwise(bands)):
            raise ValueError("bands must cover the rows from 0 without gaps")
        self._counter = counter
        self.bands = bands
        self.model = model
        self.context = context
        self.intervals = intervals if intervals is not None else load_tables().get(model)

    @property
    def engine(self) -> object | None:
        return getattr(self._counter, "engine", None)

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        image = validate_image(image_bgr)
        h, w = image.shape[:2]
        if h // STRIDE * STRIDE != self.bands[-1].bottom:
            raise ImageError(f"image has {h} rows; the person heights were given for "
                             f"{self.bands[-1].bottom} (a different camera or resolution?)")
        cols = w // STRIDE
        out = np.zeros((h // STRIDE, cols), np.float32)
        for band in self.bands:
            out[band.top // STRIDE:band.bottom // STRIDE] = self._band(image, band, cols)
        total = float(out.sum(dtype=np.float64))
        interval = self.intervals.interval(total) if self.intervals is not None else None
        return DensityResult(density=out, image_height=h, image_width=w, model=self.model,
                             interval=interval)

    def _band(self, image: np.ndarray, band: Band, cols: int) -> np.ndarray:
        h, w = image.shape[:2]
        context = self.context
        # Enough rows that the resized crop is still countable after a downscale.
        need = math.ceil(MIN_SIDE / band.scale)
        while True:
            top = max(band.top - context, 0)
            bottom = min(band.bottom + context, h // STRIDE * STRIDE)
            if bottom - top >= need or (top == 0 and bottom == h // STRIDE * STRIDE):
                break
            context += STRIDE * 4
        crop = image[top:bottom]
        if band.scale != 1.0:
            size = (max(round(w * band.scale), MIN_SIDE), max(round((bottom - top) * band.scale), MIN_SIDE))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if band.scale < 1
                              else cv2.INTER_LINEAR)
        density = self._counter.count(crop).density
        # One cell of the resized crop spans 8 / scale original pixels (per axis, as rounded).
        mapped = resample_density(density, (bottom - top) // STRIDE, cols,
                                  STRIDE * (bottom - top) / crop.shape[0], STRIDE * w / crop.shape[1])
        first = (band.top - top) // STRIDE
        return mapped[first:first + (band.bottom - band.top) // STRIDE]


def normalised_counter(counter: Counts, model: str, person_px_rows: np.ndarray) -> Counts:
    """``counter`` wrapped for these per-row person heights, or itself when no band moves.

    The dense model has no single trained height and is returned unchanged.
    """
    target = TRAINED_PERSON_PX.get(model)
    if target is None:
        return counter
    bands = plan_bands(person_px_rows, target)
    if all(b.scale == 1.0 for b in bands):
        return counter
    return ScaleNormalisedCounter(counter, bands, model=model)
