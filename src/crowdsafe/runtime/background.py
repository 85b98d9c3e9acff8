"""When a camera's temporal-median background may be published, and writing it safely.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.background``."""

from __future__ import annotations

import json
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.counter import DensityResult
from crowdsafe.measure.background import (
    PERSON_WINDOW_CELLS,
    BackgroundModel,
    encode_jpeg,
    largest_blob,
    near_empty,
    subtract_background,
    unsettled,
    window_people,
)


@dataclass(frozen=True)
class BackgroundPolicy:
    ring: int = 21  # frames in the median
    min_frames: int = 15  # median first tried after this many ring frames
    min_spacing_s: float = 15.0  # sampled frames closer than this to the last ring frame are left out
    spacing_jitter: float = 0.5  # ... times a random factor in [1, 1 + jitter]
    check_every_s: float = 300.0  # re-check (and re-publish) period once published
    retry_s: float = 60.0  # re-check period after a rejected median
    relative_tolerance: float = 0.05
    max_people: float | None = None  # absolute rule instead of the relative one, when set
    max_side: int = 640
    enabled: bool = True
    # What a published median must pass besides the count rule (module docstring):
    settle_tolerance: int = 25  # grey levels within which a ring frame agrees with the median
    settle_share: float = 0.6  # share of ring frames that must agree at every pixel ...
    max_unsettled_fraction: float = 2e-4  # ... but for specks below this share of the frame's area
    person_window_people: float = 0.3  # most (excess) density in any person-sized block of the median
    # Background density (subtracted from each frame's density; see DensityBackground):
    subtract: bool = True  # subtract a trusted background density where the camera has one
    frame_max_window_people: float = 4.0  # a frame enters the density ring only below this per block
    background_max_window_people: float = 2.0  # the median is trusted only below this per block


@dataclass(frozen=True)
class BackgroundCheck:
    """Outcome of one people-free check; ``image`` only when it passed."""

    ts: float
    median_count: float | None  # None: the median was refused before it was counted
    reference_count: float | None
    published: bool
    image: np.ndarray | None = None
    reason: str = ""  # why it was refused (empty when published)
    unsettled_px: int = 0  # largest area of the median where the frames disagree with it
    peak_people: float | None = None  # most person-like density in one block of the median


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
        self.published_ts: float | None = None
        self.note = "not checked yet"

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

    def check(self, count: Callable[[np.ndarray], DensityResult], ts: float,
              texture: np.ndarray | None = None,
              counted_box: tuple[int, int, int, int] | None = None) -> BackgroundCheck:
        """Judge the median; return the image only if nothing of a person can be in it.

        In order, each refusal ending the check (when in doubt, nothing is published):
        1. every pixel settled: the ring's frames agree with the median there (no walker's trace);
        2. no person-sized block of the median's density above ``person_window_people``
           (over ``texture``, the camera's empty-scene density, when it has a trusted one):
           nobody standing still through the whole ring;
        3. the count rule: the median counts no more than the emptiest ring frame (or fewer
           than ``max_people`` when that is set).
        ``counted_box`` (x0, y0, x1, y1 in frame pixels): where the camera's counter infers
        density, when only a region of the frame; the published picture is blanked outside
        it, since no density check covered that part.
        """
        median = self.median()
        assert median is not None
        self._next_check = ts + self.policy.retry_s
        frames = list(self._ring)
        mask = unsettled(frames, median, self.policy.settle_tolerance, self.policy.settle_share)
        blob = largest_blob(mask)
        if blob > max(8.0, self.policy.max_unsettled_fraction * mask.size):
            return self._refused(BackgroundCheck(
                ts, None, None, False, reason=f"people moved through it: {blob} pixels of the median differ "
                f"from most of its {len(frames)} frames", unsettled_px=blob))
        result = count(self._at_frame_size(median))
        density = result.density
        if texture is not None and texture.shape == density.shape:
            density = np.maximum(density - texture, 0.0)
        peak = window_people(density, PERSON_WINDOW_CELLS)
        median_count = result.count
        if peak > self.policy.person_window_people:
            return self._refused(BackgroundCheck(
                ts, median_count, None, False, reason=f"someone may be standing still in it: the counter "
                f"finds {peak:.2f} people in one {PERSON_WINDOW_CELLS}x{PERSON_WINDOW_CELLS}-cell block",
                unsettled_px=blob, peak_people=peak))
        if self.policy.max_people is not None:
            reference = None
            passed = median_count < self.policy.max_people
            why = f"the counter finds {median_count:.1f} people in it (limit {self.policy.max_people:g})"
        else:
            emptiest = self._ring[int(np.argmin(self._counts))]
            reference = count(self._at_frame_size(emptiest)).count
            passed = median_count <= reference * (1.0 + self.policy.relative_tolerance)
            why = (f"the counter finds {median_count:.1f} people in it, more than in its emptiest frame "
                   f"({reference:.1f})")
        check = BackgroundCheck(ts, median_count, reference, passed, median if passed else None,
                                "" if passed else why, blob, peak)
        if not passed:
            return self._refused(check)
        self._next_check = ts + self.policy.check_every_s
        self.published_ts = ts
        self.note = "published"
        if counted_box is not None and self._frame_size is not None:
            check = replace(check, image=self._blank_outside(median, counted_box))
        return check

    def _blank_outside(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        assert self._frame_size is not None
        sx, sy = image.shape[1] / self._frame_size[0], image.shape[0] / self._frame_size[1]
        x0, y0 = max(0, int(box[0] * sx)), max(0, int(box[1] * sy))
        x1 = min(image.shape[1], int(np.ceil(box[2] * sx)))
        y1 = min(image.shape[0], int(np.ceil(box[3] * sy)))
        out = np.full_like(image, 128)
        out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
        return out

    def _refused(self, check: BackgroundCheck) -> BackgroundCheck:
        if self.published_ts is None:
            self.note = f"last check refused it: {check.reason}"
        else:
            self.note = f"published; the last check kept a newer one back: {check.reason}"
        return check

    def status(self) -> str:
        """One phrase for the API and the dashboard: is a picture published, and if not, why."""
        if not self.policy.enabled:
            return "no background picture: publishing is off"
        if not self.ready:
            return (f"no background picture yet: {len(self._ring)} of {self.policy.min_frames} frames "
                    f"(one every {self.policy.min_spacing_s:g} s or more) gathered")
        return self.note


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
        self._undo: deque[np.ndarray | None] = deque(maxlen=8)  # captured maps before each capture
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

    def capture(self, density: np.ndarray, *, undoable: bool = False) -> None:
        """Use this map (counted while the site was empty, or a commissioning's) from now on;
        ``undoable`` (an operator's capture): the map it replaces is kept for ``undo``."""
        if undoable:
            self._undo.append(self.captured)
        self.captured = np.asarray(density, np.float32).copy()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> bool:
        """Restore the background in use before the last operator capture; False if there was none."""
        if not self._undo:
            return False
        self.captured = self._undo.pop()
        return True

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


class PersonEvidence:
    """Whether anyone was in a camera's view lately, from the counter and from motion.

    Capturing a background takes the camera's density as "nobody here": one person in view
    becomes texture subtracted from every later frame. So the last few frames must all show
    nothing person-like, by the density (any person-sized block) and by motion between
    consecutive frames (someone the counter missed still moves). Only numbers and one small
    grey copy of the previous frame are held, in memory.
    """

    FRAMES = 3  # the last frames that must all be empty
    SIDE = 320  # motion is judged on frames this wide
    THRESHOLD = 25  # grey levels (after a 5x5 blur) that count as change
    MAX_CHANGED_FRACTION = 4e-4  # largest changed area allowed, as a share of the frame (30 px at 320x240)

    def __init__(self, person_window_people: float) -> None:
        self.person_window_people = person_window_people
        self._recent: deque[tuple[float, float, int]] = deque(maxlen=self.FRAMES)
        self._previous: tuple[float, np.ndarray] | None = None

    def note(self, ts: float, density: np.ndarray, texture: np.ndarray | None, image_bgr: np.ndarray,
             max_gap_s: float) -> None:
        if texture is not None and texture.shape == density.shape:
            density = np.maximum(density - texture, 0.0)
        peak = window_people(density, PERSON_WINDOW_CELLS)
        h, w = image_bgr.shape[:2]
        scale = min(1.0, self.SIDE / max(h, w))
        # grey first: one channel to shrink, not three (half the time; the two orders differ by
        # a grey level at most, against a threshold of 25)
        small = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY),
                           (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        gray = cv2.GaussianBlur(small, (5, 5), 0)
        moved = -1  # unknown: no previous frame close enough in time, or a new size
        if self._previous is not None and peak <= self.person_window_people:
            # (where the counter already sees a person, the frame is refused whatever moved)
            then, before = self._previous
            if 0 < ts - then <= max_gap_s and before.shape == gray.shape:
                changed = cv2.absdiff(gray, before) > self.THRESHOLD
                # the largest blob is never larger than all changed pixels: under the limit,
                # their count says as much, without labelling the blobs
                moved = int(np.count_nonzero(changed))
                if moved > self._motion_limit(gray.size):
                    moved = largest_blob(changed)
        self._previous = (ts, gray)
        self._recent.append((ts, peak, moved))

    def _motion_limit(self, area: int) -> float:
        """Most changed pixels between frames still taken as nobody moving, in a frame of ``area``."""
        return max(4.0, self.MAX_CHANGED_FRACTION * area)

    def why_not_empty(self) -> str | None:
        """None when the last frames show nobody; else the reason, in words."""
        if len(self._recent) < self.FRAMES:
            return f"only {len(self._recent)} of the {self.FRAMES} frames needed were seen yet"
        area = self._previous[1].size if self._previous is not None else 0
        for _ts, peak, moved in self._recent:
            if peak > self.person_window_people:
                return (f"the counter finds a person in view ({peak:.2f} people in one "
                        f"{PERSON_WINDOW_CELLS * 8}-pixel block)")
            if moved < 0:
                return "motion could not be judged (frames too far apart)"
            if moved > self._motion_limit(area):
                return f"something moves in view ({moved} pixels changed between frames)"
        return None


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


def write_background_note(folder: Path, camera_id: str, note: str, ts: float) -> None:
    """``folder/<camera>.json``: why the camera's picture is (not) published, for the API to show.

    The API may run in another process over the same state folder, so the note is a file
    beside the picture rather than something held in memory.
    """
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{camera_id}.note.partial"
    try:
        partial.write_text(json.dumps({"note": note, "ts": ts}))
        os.replace(partial, folder / f"{camera_id}.json")
    except OSError:
        partial.unlink(missing_ok=True)
        raise

