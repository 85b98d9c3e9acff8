"""When a camera's temporal-median background may be published, and writing it safely.

``measure.background`` checks a median with an absolute people limit (fewer than 0.5). The
shipped dense CSRNet model cannot pass that on real CCTV: it over-counts sparse scenes and
reports about 16 "people" on an empty median of the demo video (22 on its frames, where 3 to 8
people really walk). So the default rule here is *relative*, judged by the same counter at the
same resolution:

    publish iff count(median) <= (1 + tolerance) x count(emptiest ring frame, downscaled alike)

i.e. the median must look no more crowded than the least crowded frame it was made from. A
person who walked through is in few frames and vanishes from the median; the model's texture
floor is in all of them and cancels out. What this cannot catch is a crowd that stood still
through every frame of the ring (then the emptiest frame is as crowded as the median), and on
its own it does not catch a person walking slowly through frames taken close together: with
frames one second apart, someone crossing the demo scene is in most of them, so is in the
median, and the counter (whose floor is ~16 "people") cannot tell one person more. So frames
enter the ring at least ``min_spacing_s`` apart (times a random factor up to 1 +
``spacing_jitter``, so a periodic scene, such as a looped clip or a traffic light, is not
sampled at the same phase every time): the default ring then spans minutes whatever the
camera's sampling period, and a walker is in one or two of its frames. The absolute rule
(``max_people``) is there for models whose empty-scene count is near zero.

The background is the only image crowdsafe writes. It goes to ``backgrounds/<camera>.jpg`` via
a temporary name that is not an image name, then an atomic rename, so a reader never sees half
a JPEG and a crash leaves no stray picture.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdsafe.measure.background import BackgroundModel, encode_jpeg


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
        if len(self._ring) == 1:
            self._counts.clear()  # the ring was (re)started, e.g. on a resolution change
        self._counts.append(count)

    def due(self, ts: float) -> bool:
        return self.policy.enabled and self.ready and (self._next_check is None or ts >= self._next_check)

    def check(self, count_people: Callable[[np.ndarray], float], ts: float) -> BackgroundCheck:
        """Count the median (and the emptiest ring frame); return the image only if it passes."""
        median = self.median()
        assert median is not None
        median_count = count_people(median)
        if self.policy.max_people is not None:
            reference = None
            passed = median_count < self.policy.max_people
        else:
            emptiest = self._ring[int(np.argmin(self._counts))]
            reference = count_people(emptiest)
            passed = median_count <= reference * (1.0 + self.policy.relative_tolerance)
        self._next_check = ts + (self.policy.check_every_s if passed else self.policy.retry_s)
        return BackgroundCheck(ts, median_count, reference, passed, median if passed else None)


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
