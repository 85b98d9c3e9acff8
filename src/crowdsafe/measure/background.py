"""People-free background of a camera: the per-pixel temporal median of sampled frames.

Operators need to see *where* the crowd is on a picture of the place, but a stored frame is a
picture of people. A median over frames spread across minutes keeps what is static (floor,
walls, barriers) and removes what moves (people), so it is the only image crowdsafe keeps.
A median can still hold a person: one who stood in more than half of its frames, or the
blend of several walkers who crossed the same spot. So it is published only when its pixels
are *settled* (most frames agree with the median at every pixel: ``unsettled``) and the
density counter finds nothing person-like anywhere in it (``window_people`` over a small
block); see ``crowdsafe.runtime.background``.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np


class BackgroundModel:
    """Keeps a small ring of downscaled frames, never full-resolution ones, and their median."""

    def __init__(self, size: int = 15, max_side: int = 640, min_frames: int = 7) -> None:
        if not 3 <= min_frames <= size:
            raise ValueError("need 3 <= min_frames <= size")
        self.max_side = max_side
        self.min_frames = min_frames
        self._ring: deque[np.ndarray] = deque(maxlen=size)

    def add(self, image_bgr: np.ndarray) -> None:
        h, w = image_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(image_bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        if self._ring and self._ring[0].shape != small.shape:
            self._ring.clear()  # the camera changed resolution: start again
        self._ring.append(small)

    @property
    def ready(self) -> bool:
        return len(self._ring) >= self.min_frames

    def median(self) -> np.ndarray | None:
        if not self.ready:
            return None
        return np.median(np.stack(self._ring), axis=0).astype(np.uint8)


def _smoothed_gray(image_bgr: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return cv2.GaussianBlur(gray, (5, 5), 0).astype(np.int16)


def unsettled(frames: list[np.ndarray], median: np.ndarray, tolerance: int = 25,
              share: float = 0.6) -> np.ndarray:
    """Pixels where fewer than ``share`` of the frames are within ``tolerance`` grey levels of the median.

    A median pixel showing a person needs that person (or people) in at least half of the
    frames there; every other frame shows the ground, so agreement is at most the share of
    frames with someone on that spot. Demanding ``share`` > 0.5 flags every spot a person
    could have put into the median unless they stood there in more than ``share`` of frames
    spread over minutes, which is standing still (left to the density check).
    """
    target = _smoothed_gray(median)
    agree = np.zeros(target.shape, np.int32)
    for frame in frames:
        agree += np.abs(_smoothed_gray(frame) - target) <= tolerance
    return agree < share * len(frames)


def largest_blob(mask: np.ndarray) -> int:
    """Area in pixels of the largest 8-connected part of ``mask`` after a 3x3 opening (specks go)."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def encode_jpeg(image_bgr: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode background as JPEG")
    return buf.tobytes()


#: Side, in density cells, of the block in which one person's density gathers (4 cells = 32
#: pixels, a head and shoulders at the distances CCTV sees people): a person anywhere puts
#: most of one "person" in some such block, an empty scene's texture only a small fraction.
PERSON_WINDOW_CELLS = 4

#: Side, in density cells, of the square window over which "near-empty" is judged (16 cells =
#: 128 pixels): wide enough that a crowd always fills it with several people, narrow enough that
#: one walker (whom the sparse model may count twice, body parts as heads) cannot.
EMPTY_WINDOW_CELLS = 16


def window_people(density: np.ndarray, window: int = EMPTY_WINDOW_CELLS) -> float:
    """The most people the density map holds in any ``window`` x ``window`` block of cells."""
    if density.size == 0:
        return 0.0
    k = max(1, min(window, *density.shape))
    sums = cv2.boxFilter(np.asarray(density, np.float32), -1, (k, k), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)
    return float(sums.max())


def near_empty(density: np.ndarray, max_window_people: float, window: int = EMPTY_WINDOW_CELLS) -> bool:
    """True when no block of the map holds more than ``max_window_people``: nowhere a crowd.

    A whole-image count cannot tell a scene's texture floor (kerbs and bollards read as heads,
    spread thinly over the frame) from a real group; a crowd, however, is always dense somewhere.
    """
    return window_people(density, window) <= max_window_people


def subtract_background(density: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Cell by cell ``max(density - background, 0)``.

    Clipping at zero means no cell loses more than the background's own density there (and
    never goes negative), so people standing on a spot the counter misreads as texture lose
    only that texture's few tenths of a person, not themselves.
    """
    if density.shape != background.shape:
        raise ValueError(f"background density {background.shape} does not match the frame's {density.shape}")
    return np.maximum(density - background, 0.0).astype(np.float32, copy=False)
