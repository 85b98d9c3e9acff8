"""Recorded media played as if it were a live camera: paced to the wall clock, optionally looped.

Timestamps are the scheduled wall-clock times, so flow velocities hold when a thread wakes late.

Why and how: docs/design-notes.md, ``crowdsafe.sources.looping``."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.sources.frames import Frame, Grab, LiveSource, SkipLog, SkippedFrame, SourceError
from crowdsafe.sources.images import read_image
from crowdsafe.sources.video import open_capture

#: Being further behind the schedule than this re-anchors it to the wall clock.
MAX_LAG_S = 1.0
#: Failed grabs in a row that mean the end of the file (as in ``sources.video``).
MAX_CONSECUTIVE_FAILURES = 32


class LoopingVideoSource(LiveSource):
    """A video file played at its frame rate with wall-clock timestamps; loops until ``stop()``."""

    def __init__(self, path: Path, *, loop: bool = True, name: str | None = None) -> None:
        self.path = path
        self.name = name or path.name
        self.loop = loop
        self.skipped = SkipLog()
        self.loops = 0
        self.corrupt_frames = 0  # failed grabs between good frames (not the end of the file)
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(f"{path}: not a video OpenCV can open (corrupt or unsupported)")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        finally:
            cap.release()
        if not (math.isfinite(fps) and 0 < fps < 1000):
            raise SourceError(f"{path}: the video has no frame rate, so it cannot be played as a camera")
        self.fps = float(fps)
        self._stop = threading.Event()

    def _position_s(self, cap: cv2.VideoCapture, index: int) -> float:
        """Seconds into the file: the container's time where plausible, else index / fps."""
        msec = cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and (msec > 0 or (index == 0 and msec == 0)):
            return msec / 1000.0
        return index / self.fps

    def _retrieve(self, cap: cv2.VideoCapture, position: int) -> np.ndarray | None:
        ok, image = cap.retrieve()
        if not ok or image is None:
            self.skipped.append(SkippedFrame(self.name, position, "could not be decoded"))
            return None
        return image

    def grabs(self) -> Iterator[Grab]:
        """Every frame, paced, as a :class:`Grab`: only the ones the caller decodes cost pixels.

        ``index`` is the frame's number in the file (it repeats on every loop), so readings can
        be matched to annotations of the file.
        """
        anchor = time.time()  # wall-clock time of position 0 of the current pass
        while not self._stop.is_set():
            cap = open_capture(self.path)
            if not cap.isOpened():
                raise SourceError(f"{self.path}: cannot be reopened")
            position, failures, last_pos = 0, 0, None
            try:
                while not self._stop.is_set():
                    if not cap.grab():
                        failures += 1
                        if failures > MAX_CONSECUTIVE_FAILURES:
                            break
                        continue
                    # A failed grab still used up a frame of the file (as in ``sources.video``):
                    # the frame after a bad patch keeps its own number, so readings stay matched
                    # to annotations of the file and each loop numbers frames the same way.
                    index = position + failures
                    if failures:  # a bad patch between good frames; at the end of the file grabs only fail
                        self.corrupt_frames += failures
                        self.skipped.append(SkippedFrame(self.name, position, f"{failures} frame(s) could "
                                                         "not be decoded (corrupt data)"))
                    failures = 0
                    pos = self._position_s(cap, index)
                    position = index + 1
                    lag = time.time() - (anchor + pos)
                    if lag < 0:
                        if self._stop.wait(-lag):
                            break
                    elif lag > MAX_LAG_S:
                        anchor += lag
                    last_pos = pos
                    yield Grab(self.name, position - 1, anchor + pos,
                               functools.partial(self._retrieve, cap, position - 1))
            finally:
                cap.release()
            if last_pos is None or not self.loop:
                return
            anchor += last_pos + 1.0 / self.fps
            self.loops += 1

    def __iter__(self) -> Iterator[Frame]:
        for grab in self.grabs():
            image = grab.decode()
            if image is not None:
                yield Frame(grab.source, grab.index, grab.timestamp, image)


class PacedImagesSource(LiveSource):
    """Still images shown one every ``every`` seconds with wall-clock timestamps; loops until stopped.

    A folder of snapshots has no frame rate and no close pairs, so each image is one sample
    and flow is not measured for such a camera. Unreadable images are skipped and recorded.
    """

    def __init__(self, files: Sequence[Path], every: float, *, loop: bool = True, name: str = "") -> None:
        if not files:
            raise SourceError(f"{name or 'images'}: no image files")
        self.files = list(files)
        self.every = every
        self.loop = loop
        self.name = name or files[0].parent.name
        self.skipped = SkipLog()
        self._stop = threading.Event()

    def first_size(self) -> tuple[int, int] | None:
        """(width, height) of the first readable image, for cameras without a calibrated size."""
        for file in self.files:
            try:
                image = read_image(file)
            except SourceError:
                continue
            return image.shape[1], image.shape[0]
        return None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        due = time.time()
        while not self._stop.is_set():
            shown = 0
            for file in self.files:
                wait = due - time.time()
                if wait > 0 and self._stop.wait(wait):
                    return
                try:
                    image = read_image(file)
                except SourceError as exc:
                    self.skipped.append(SkippedFrame(file.name, index, str(exc).removeprefix(f"{file}: ")))
                    continue
                now = time.time()
                yield Frame(file.name, index, now, image)
                index += 1
                shown += 1
                due = max(due + self.every, now)
            if shown == 0 or not self.loop:
                return
