"""Live camera streams (RTSP, HTTP MJPEG, anything FFmpeg opens) that survive the network.

A CCTV feed drops, stalls and comes back; the reader must do the same without help. This
source reconnects with exponential backoff and jitter (so a hundred cameras behind one
failed switch do not reconnect in lock-step), detects stalls with FFmpeg read timeouts,
records every gap, and keeps a health record the API can show. Sampling is cheap: frames
between samples are only ``grab()``-ed (demuxed, not decoded into pixels).
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from crowdsafe.sources.frames import Frame, Grab, LiveSource, SkipLog, SkippedFrame
from crowdsafe.urls import redact as redact_url

# RTSP over TCP: survives NAT and firewalls and loses no packets; UDP is opt-in via the env var.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")

Status = Literal["connecting", "up", "reconnecting", "stopped"]


def is_stream_url(text: str) -> bool:
    return text.lower().startswith(STREAM_SCHEMES)


@dataclass
class Gap:
    """A period without frames: from the last good frame to the first after reconnecting."""

    start: float
    end: float | None = None
    reason: str = ""


@dataclass
class StreamHealth:
    """What an operator needs to see about a camera feed."""

    status: Status = "connecting"
    last_frame_ts: float | None = None
    fps: float = 0.0
    frames_read: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""
    gaps: list[Gap] = field(default_factory=list)


def redact(url: str) -> str:
    """The URL without credentials (camera passwords must not reach logs or the API)."""
    return redact_url(url)


class StreamSource(LiveSource):
    """Yields sampled frames from a live URL until ``stop()``; never raises on network faults."""

    def __init__(self, url: str, every: float | None = None, *, name: str | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.name = name or redact(url)
        self.every = every
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.clock = clock
        self.health = StreamHealth()
        self.skipped = SkipLog()
        self._stop = threading.Event()

    def _open(self) -> cv2.VideoCapture | None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _fail(self, reason: str) -> None:
        self.health.errors += 1
        self.health.last_error = reason
        if not self.health.gaps or self.health.gaps[-1].end is not None:
            start = self.health.last_frame_ts if self.health.last_frame_ts is not None else self.clock()
            self.health.gaps.append(Gap(start=start, reason=reason))

    def _wait_backoff(self, attempt: int) -> None:
        delay = min(self.backoff_s * (2 ** attempt), self.max_backoff_s) * random.uniform(0.5, 1.0)
        self._stop.wait(delay)

    def _retrieve(self, cap: cv2.VideoCapture, index: int) -> np.ndarray | None:
        ok, image = cap.retrieve()
        if not ok or image is None:
            self.skipped.append(SkippedFrame(self.name, index, "frame could not be decoded"))
            self.health.errors += 1
            return None
        return image

    def grabs(self) -> Iterator[Grab]:
        """Every frame of the feed as a :class:`Grab`, across reconnects, until ``stop()``.

        The caller decodes only what it samples; ``every`` is not applied here.
        """
        attempt = 0
        index = 0
        opened_before = False
        while not self._stop.is_set():
            self.health.status = "connecting" if self.health.frames_read == 0 else "reconnecting"
            cap = self._open()
            if cap is None:
                self._fail(f"cannot open {self.name}")
                self._wait_backoff(attempt)
                attempt += 1
                continue
            self.health.reconnects += int(opened_before)
            opened_before = True
            attempt = 0
            rate_t0, rate_n = time.monotonic(), 0
            try:
                while not self._stop.is_set():
                    if not cap.grab():  # end of stream, dropped connection or read timeout
                        self._fail(f"stream {self.name} stalled or closed")
                        break
                    now = self.clock()
                    self.health.frames_read += 1
                    rate_n += 1
                    elapsed = time.monotonic() - rate_t0
                    if elapsed >= 2.0:
                        self.health.fps = rate_n / elapsed
                        rate_t0, rate_n = time.monotonic(), 0
                    if self.health.gaps and self.health.gaps[-1].end is None:
                        self.health.gaps[-1].end = now
                    self.health.status = "up"
                    self.health.last_frame_ts = now
                    yield Grab(self.name, index, now, functools.partial(self._retrieve, cap, index))
                    index += 1
            finally:
                cap.release()
            self._wait_backoff(attempt)
            attempt += 1
        self.health.status = "stopped"

    def __iter__(self) -> Iterator[Frame]:
        """Frames at least ``every`` seconds apart (every frame if None); the rest only grabbed."""
        next_due = 0.0
        index = 0
        for grab in self.grabs():
            if self.every is not None and grab.timestamp < next_due:
                continue
            image = grab.decode()
            if image is None:
                continue
            next_due = grab.timestamp + (self.every or 0.0)
            yield Frame(source=self.name, index=index, timestamp=grab.timestamp, image=image)
            index += 1


class FiniteStream(StreamSource):
    """A stream read once, for ``crowdsafe count``: up to ``limit`` frames, no reconnecting.

    A live reader must outlast any outage; a one-off count must instead end, and say why when the
    camera cannot be reached, so the first failure stops it and is recorded as a skip (with the
    URL's credentials redacted, like every name a stream shows).
    """

    def __init__(self, url: str, every: float | None = None, *, limit: int = 10, **kwargs: object) -> None:
        super().__init__(url, every, **kwargs)  # type: ignore[arg-type]
        self.limit = limit

    @property
    def expected(self) -> int | None:
        return self.limit

    def _fail(self, reason: str) -> None:
        super()._fail(reason)
        why = ("cannot open the stream (unreachable, wrong URL or credentials, or not a video stream)"
               if self.health.frames_read == 0 else "the stream stalled or closed")
        self.skipped.append(SkippedFrame(self.name, self.health.frames_read, why))
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        for n, frame in enumerate(super().__iter__(), start=1):
            yield frame
            if n >= self.limit:
                self.stop()
                return
