"""When a camera's temporal-median background may be published, and writing it safely.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.background``."""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.measure.background import BackgroundModel, encode_jpeg, near_empty, subtract_background


@dataclass(frozen=True)
class BackgroundPolicy:
    ring: int = 15  # frames in the median
    min_frames: int = 7  # median first tried after this many ring frames
    min_spacing_s: float = 15.0  # sampled frames closer than this to the last ring frame are left out
    spacing_jitter: float = 0.5  # ... times a random factor in [1, 1 + jitter]
    check_every_s: float = 300.0  # re-check (and re-publish) period once published
    retry_s: float = 60.0  # re-check period after a rejected median
    relative_tolerance: float = 0.05
    max_people: float | None = None  # absolute rule instead of the relative one, when set
    max_side: int = 640
    enabled: bool = True
    # Background density (subtracted from each frame's density; see DensityBackground):
    subtract: bool = True  # subtract a trusted background density where the camera has one
    frame_max_window_people: float = 4.0  # a frame enters the density ring only below this per block
    background_max_window_people: float = 2.0  # the median is trusted only below this per block


@dataclass(frozen=True)
class BackgroundCheck:
    """Outcome of one people-free check; ``image`` only when it passed."""

    ts: float
    median_count: float
    reference_count: float | None
    published: bool
    image: np.ndarray | None = None


class CameraBackground(BackgroundModel):
    """The ring of downscaled sampled frames, with each frame's full-resolution count beside it."""

    def __init__(self, policy: BackgroundPolicy) -> None:
        super().__init__(size=policy.ring, max_side=policy.max_side, min_frames=policy.min_frames)
        self.policy = policy
        self._counts: deque[float] = deque(maxlen=policy.ring)
        self._next_check: float | None = None
        self._next_add: float | None = None
        self._random = random.Random()
        self._frame_size: tuple[int, int] | None = None

    def add_counted(self, image_bgr: np.ndarray, count: float, ts: float | None = None) -> None:
        """Add a sampled frame to the ring, unless it is within the spacing of the last one added."""
        if not self.policy.enabled:
            return
        if ts is not None:
            if self._next_add is not None and ts < self._next_add:
                return
            factor = 1.0 + self._random.uniform(0.0, max(self.policy.spacing_jitter, 0.0))
            self._next_add = ts + self.policy.min_spacing_s * factor
        self.add(image_bgr)
        self._frame_size = (image_bgr.shape[1], image_bgr.shape[0])
        if len(self._ring) == 1:
            self._counts.clear()  # the ring was (re)started, e.g. on a resolution change
        self._counts.append(count)

    def due(self, ts: float) -> bool:
        return self.policy.enabled and self.ready and (self._next_check is None or ts >= self._next_check)

    def _at_frame_size(self, image: np.ndarray) -> np.ndarray:
        """The ring's downscaled image back at the camera's frame size, for counting.

        The engine compiles one network per input shape; counting the 640-pixel median would
        hold a second compiled network (about 115 MB of native memory) for a check made every
        few minutes, so it is counted at the shape the frames already use.
        """
        if self._frame_size is None or (image.shape[1], image.shape[0]) == self._frame_size:
            return image
        return cv2.resize(image, self._frame_size, interpolation=cv2.INTER_LINEAR)

    def check(self, count_people: Callable[[np.ndarray], float], ts: float) -> BackgroundCheck:
        """Count the median (and the emptiest ring frame); return the image only if it passes."""
        median = self.median()
        assert median is not None
        median_count = count_people(self._at_frame_size(median))
        if self.policy.max_people is not None:
            reference = None
            passed = median_count < self.policy.max_people
        else:
            emptiest = self._ring[int(np.argmin(self._counts))]
            reference = count_people(self._at_frame_size(emptiest))
            passed = median_count <= reference * (1.0 + self.policy.relative_tolerance)
        self._next_check = ts + (self.policy.check_every_s if passed else self.policy.retry_s)
        return BackgroundCheck(ts, median_count, reference, passed, median if passed else None)


class DensityBackground:
    """One camera's background density: learned from near-empty frames, or captured explicitly.

    ``current`` is what is subtracted: the captured map if there is one, else the learned median
    once ``min_frames`` near-empty frames were seen and the median is itself near-empty; else
    None, and the camera counts without subtraction (``status`` says so for its health).
    """

    def __init__(self, policy: BackgroundPolicy) -> None:
        self.policy = policy
        self._ring: deque[np.ndarray] = deque(maxlen=policy.ring)
        self._next_add: float | None = None
        self._random = random.Random()
        self.learned: np.ndarray | None = None
        self.captured: np.ndarray | None = None
        self.rejected_frames = 0
        self._note = "learning: no near-empty frame yet"

    def add(self, density: np.ndarray, ts: float | None = None) -> bool:
        """Offer a frame's (unsubtracted) density; True if it entered the ring."""
        if not self.policy.enabled:
            return False
        if ts is not None and self._next_add is not None and ts < self._next_add:
            return False
        if not near_empty(density, self.policy.frame_max_window_people):
            self.rejected_frames += 1
            if self.learned is None:
                self._note = f"learning: {self.rejected_frames} frames held a crowd and were left out"
            return False
        if ts is not None:
            factor = 1.0 + self._random.uniform(0.0, max(self.policy.spacing_jitter, 0.0))
            self._next_add = ts + self.policy.min_spacing_s * factor
        if self._ring and self._ring[0].shape != density.shape:
            self._ring.clear()
            self.learned = None
        self._ring.append(np.asarray(density, np.float32).copy())
        if len(self._ring) >= self.policy.min_frames:
            median = np.median(np.stack(self._ring), axis=0).astype(np.float32)
            if near_empty(median, self.policy.background_max_window_people):
                self.learned = median
                self._note = f"learned from {len(self._ring)} near-empty frames"
            else:
                self.learned = None
                self._note = "learned median holds a crowd somewhere: not trusted"
        else:
            self._note = f"learning: {len(self._ring)} of {self.policy.min_frames} near-empty frames"
        return True

    def frame_is_near_empty(self, density: np.ndarray) -> bool:
        return near_empty(density, self.policy.frame_max_window_people)

    def capture(self, density: np.ndarray) -> None:
        """Use this map (counted while the site was empty, or a commissioning's) from now on."""
        self.captured = np.asarray(density, np.float32).copy()

    @property
    def current(self) -> np.ndarray | None:
        if not self.policy.subtract:
            return None
        return self.captured if self.captured is not None else self.learned

    def apply(self, density: np.ndarray) -> np.ndarray:
        """The frame's density less the trusted background (unchanged without one, or on a size change)."""
        background = self.current
        if background is None or background.shape != density.shape:
            return density
        return subtract_background(density, background)

    def status(self) -> str:
        """One phrase for the camera's health: is a background subtracted, and which."""
        if not self.policy.subtract:
            return "background subtraction off"
        if self.captured is not None:
            return f"subtracting a captured background ({float(self.captured.sum()):.1f} people of texture)"
        if self.learned is not None:
            return (f"subtracting a learned background ({float(self.learned.sum()):.1f} people of texture, "
                    f"{self._note})")
        return f"no trusted background, counting without subtraction ({self._note})"


def write_background(folder: Path, camera_id: str, image_bgr: np.ndarray) -> Path:
    """Atomically replace ``folder/<camera>.jpg``; the temporary file never has an image name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{camera_id}.jpg"
    partial = folder / f".{camera_id}.partial"
    try:
        partial.write_bytes(encode_jpeg(image_bgr))
        os.replace(partial, target)
    except OSError:  # e.g. a full disk: no half-written picture is left behind
        partial.unlink(missing_ok=True)
        raise
    return target
