"""From an image to a density map and a count, whatever the image size.

The network is fully convolutional, so any size works in principle; in practice memory
grows with pixels (a 4K frame needs several GB of activations). Large images are split
into overlapping tiles whose margins are discarded, so every output cell is computed with
the context it would have had in one pass. Images too small for the network's three
2x2 pools, or absurdly large, are refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from crowdsafe.counting.engines import Engine, EngineSpec, create_engine
from crowdsafe.counting.graph import STRIDE
from crowdsafe.counting.intervals import IntervalTable, load_tables

#: Smallest side we accept: below this the density map is a handful of cells and meaningless.
MIN_SIDE = 32
#: Largest image we process at all (pixels); beyond this it is almost surely not CCTV.
MAX_PIXELS = 100_000_000
#: Tiles are at most this many pixels (about 1920x1080), keeping memory near 1.5 GB.
TILE_PIXELS = 1920 * 1088
#: Context kept around each tile and discarded after inference (multiple of STRIDE).
TILE_MARGIN = 64


class ImageError(ValueError):
    """The image cannot be counted (too small, too large, wrong shape); message says why."""


@dataclass(frozen=True)
class DensityResult:
    """A density map at 1/8 resolution; ``count`` is its sum (people in the image)."""

    density: np.ndarray
    image_height: int
    image_width: int
    cell: int = STRIDE
    #: Which model produced the map (``dense``/``sparse``), and the count's interval at the
    #: level fitted on held-out TRAIN images (None when the model has no shipped table).
    model: str = "dense"
    interval: tuple[float, float] | None = None

    @property
    def count(self) -> float:
        return float(self.density.sum(dtype=np.float64))


class Counts(Protocol):
    """Anything that turns a BGR image into a density result (a counter or a lazy one).

    It lives beside :class:`DensityResult` (it was in ``counting.batch``) so that runtime and
    evaluation can type a counter without importing ``batch``, which depends on ``sources``.
    """

    def count(self, image_bgr: np.ndarray) -> DensityResult: ...


class CountsCameras(Protocol):
    """Counts any camera's image with that camera's own counter (a site mixes models and tunings).

    The runner's counting strategies (in process, or on Ray replicas) and the per-camera
    counters all answer this, so the measuring stages never ask which kind they were given.
    """

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult: ...


@dataclass(frozen=True)
class EveryCamera:
    """One counter for every camera: single-model evaluation, and tests with a fake counter."""

    counter: Counts

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult:
        return self.counter.count(image_bgr)


def to_batch(image_bgr: np.ndarray) -> np.ndarray:
    """OpenCV BGR uint8 (H,W,3) -> network input (1,3,H,W) float32 RGB 0..255."""
    rgb = image_bgr[:, :, ::-1]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)


def validate_image(image: np.ndarray) -> np.ndarray:
    """A 3-channel uint8 image of sensible size, or ImageError saying what is wrong."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ImageError("empty image")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"expected an HxWx3 colour image, got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        raise ImageError(f"expected 8-bit pixels, got {image.dtype}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    if h * w > MAX_PIXELS:
        raise ImageError(f"image is {w}x{h} = {h * w / 1e6:.0f} MP; the limit is "
                         f"{MAX_PIXELS / 1e6:.0f} MP. Downscale it first.")
    return image


def _tile_starts(length: int, core: int) -> list[int]:
    return list(range(0, max(length - 1, 0) // core * core + 1, core)) or [0]


class DensityCounter:
    """Counts people in images with one engine; reusable across frames and cameras."""

    def __init__(self, engine: Engine | None = None, tile_pixels: int = TILE_PIXELS,
                 intervals: IntervalTable | None = None) -> None:
        self.engine = engine or create_engine(EngineSpec())
        self.tile_pixels = tile_pixels
        self.model: str = getattr(self.engine, "model", "dense")
        self.intervals = intervals if intervals is not None else load_tables().get(self.model)

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        image = validate_image(image_bgr)
        h, w = image.shape[:2]
        if h * w <= self.tile_pixels:
            density = self.engine.infer(to_batch(image))[0, 0]
        else:
            density = self._tiled(image)
        density = density.astype(np.float32, copy=False)
        total = float(density.sum(dtype=np.float64))
        interval = self.intervals.interval(total) if self.intervals is not None else None
        return DensityResult(density=density, image_height=h, image_width=w, model=self.model,
                             interval=interval)

    def _tiled(self, image: np.ndarray) -> np.ndarray:
        """Overlapping tiles on the 8-pixel grid; each keeps only its core region."""
        h, w = image.shape[:2]
        side = int(np.sqrt(self.tile_pixels)) // STRIDE * STRIDE
        core = max(side - 2 * TILE_MARGIN, STRIDE * 8)
        out = np.zeros((h // STRIDE, w // STRIDE), np.float32)
        for y0 in _tile_starts(h, core):
            for x0 in _tile_starts(w, core):
                ty0, tx0 = max(y0 - TILE_MARGIN, 0), max(x0 - TILE_MARGIN, 0)
                ty1, tx1 = min(y0 + core + TILE_MARGIN, h), min(x0 + core + TILE_MARGIN, w)
                tile = self.engine.infer(to_batch(image[ty0:ty1, tx0:tx1]))[0, 0]
                cy0, cx0 = (y0 - ty0) // STRIDE, (x0 - tx0) // STRIDE
                cy1 = min((y0 + core) // STRIDE, h // STRIDE)
                cx1 = min((x0 + core) // STRIDE, w // STRIDE)
                oy, ox = y0 // STRIDE, x0 // STRIDE
                out[oy:cy1, ox:cx1] = tile[cy0:cy0 + cy1 - oy, cx0:cx0 + cx1 - ox]
        return out
