"""Video files, optionally sampled every N seconds, surviving corrupt frames.

Why and how: docs/design-notes.md, ``crowdsafe.sources.video``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2

from crowdsafe.sources.frames import Frame, SkipLog, SkippedFrame, SourceError
from crowdsafe.sources.sampling import FramePlan

VIDEO_SUFFIXES = frozenset({
    ".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".asf", ".flv", ".3gp", ".ogv", ".mjpg", ".mjpeg", ".h264", ".264", ".h265",
    ".hevc", ".265", ".vob", ".dav",
})
#: Failed grabs in a row after which a stream of unknown length is taken to have ended.
MAX_CONSECUTIVE_FAILURES = 32
#: Most failed grabs in a row even when the header says frames remain: some containers only
#: estimate their frame count, and at the true end every grab fails.
MAX_TAIL_RETRIES = 1024


def open_capture(path: Path) -> cv2.VideoCapture:
    """The file opened to be read frame by frame, its decoder on one thread.

    FFmpeg decodes on as many threads as the machine has cores by default: for a reader beside a
    counting engine that already holds every core, the extra threads only add their own overhead
    (a third more CPU per frame on the sample video) and a few frames of latency. Files FFmpeg
    cannot open are tried with OpenCV's other backends.
    """
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap.release()
        cap = cv2.VideoCapture(str(path))
    return cap


class VideoSource:
    """A video file; ``every`` seconds between counted frames, or None for every frame."""

    def __init__(self, path: Path, every: float | None = None) -> None:
        self.path = path
        self.name = path.name
        self.skipped = SkipLog(maxlen=None)  # a file ends: the report lists every skip
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(f"{path}: not a video OpenCV can open (corrupt or unsupported)")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.frame_count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            cap.release()
        self.fps: float | None = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        if every is not None and self.fps is None:
            raise SourceError(f"{path}: the video has no frame rate, so it cannot be sampled "
                              "by time; leave out --every to count every frame")
        self.plan = FramePlan(every)

    @property
    def expected(self) -> int | None:
        return self.plan.expected(self.frame_count, self.fps)

    def _timestamp(self, cap: cv2.VideoCapture, index: int) -> float | None:
        """Seconds from the start, from the container when it gives a plausible time."""
        msec = cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and (msec > 0 or (index == 0 and msec == 0)):
            return msec / 1000.0
        return index / self.fps if self.fps else None

    def _gave_up(self, position: int, failures: int) -> bool:
        """True when failed grabs mean the end of the stream rather than a bad patch."""
        if not self.frame_count:
            return failures > MAX_CONSECUTIVE_FAILURES
        return failures > min(max(self.frame_count - position, 0), MAX_TAIL_RETRIES)

    def _skip(self, first: int, last: int, reason: str) -> None:
        label = str(first) if first == last else f"{first}-{last}"
        self.skipped.append(SkippedFrame(self.name, first, f"frame {label}: {reason}"))

    def __iter__(self) -> Iterator[Frame]:
        cap = open_capture(self.path)
        if not cap.isOpened():
            raise SourceError(f"{self.path}: not a video OpenCV can open")
        position, failures, target, yielded = 0, 0, 0.0, 0
        try:
            while True:
                if not cap.grab():
                    failures += 1
                    if self._gave_up(position, failures):
                        break
                    continue
                index = position + failures
                if failures:
                    self._skip(position, index - 1, "could not be decoded (corrupt data)")
                position, failures = index + 1, 0
                timestamp = self._timestamp(cap, index)
                if not self.plan.is_due(timestamp, target):
                    continue
                ok, image = cap.retrieve()
                target = self.plan.next_target(timestamp)
                if not ok or image is None:
                    self._skip(index, index, "decoded but could not be converted to an image")
                    continue
                yielded += 1
                yield Frame(self.name, index, timestamp, image)
        finally:
            cap.release()
        if self.frame_count and position < self.frame_count:
            self._skip(position, self.frame_count - 1,
                       f"missing: the header announces {self.frame_count} frames but decoding "
                       "stopped here (corrupt or truncated end of file)")
        if yielded == 0 and not self.skipped:
            raise SourceError(f"{self.path}: the video contains no frames")
