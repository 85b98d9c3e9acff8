"""One reader thread per camera: read continuously, sample every N s, hand (frame, next frame) on.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.camera``."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from crowdsafe.config.site import Camera, Site
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.sources.frames import FrameSource, Grab, SourceError
from crowdsafe.sources.images import IMAGE_SUFFIXES, FolderSource, is_image_file
from crowdsafe.sources.looping import LoopingVideoSource, PacedImagesSource
from crowdsafe.sources.stream import StreamHealth, StreamSource, is_stream_url, redact
from crowdsafe.sources.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

#: A pair whose measured interval is off the frame rate by more than this factor uses 1/fps
#: instead (frames that arrived in a burst after a network hiccup carry arrival, not capture, times).
DT_TOLERANCE = 2.0


@dataclass(frozen=True)
class Sample:
    """A sampled frame and, when the source has a frame rate, the frame after it (for flow)."""

    camera_id: str
    ts: float  # UTC epoch seconds
    image: np.ndarray
    pair: np.ndarray | None = None
    pair_dt: float | None = None  # seconds from image to pair
    frame_index: int | None = None  # the frame's number in its source (a file's frame number)
    decode_s: float = 0.0  # seconds the reader spent decoding the frame and its pair


@dataclass(frozen=True)
class CameraHealth:
    """A snapshot of a reader's state, as stored in ``camera_health`` and shown to operators."""

    camera_id: str
    status: str  # connecting / up / reconnecting / ended / failed / stopped
    fps: float
    last_frame_ts: float | None
    frames_read: int
    samples: int
    dropped: int
    errors: int
    reconnects: int
    gaps: int
    last_gap_s: float | None
    last_error: str

    def message(self) -> str:
        text = (f"frames {self.frames_read}, samples {self.samples}, dropped {self.dropped}, "
                f"reconnects {self.reconnects}, gaps {self.gaps}")
        if self.last_gap_s is not None:
            text += f" (last {self.last_gap_s:.1f} s)"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text


class StoppableSource(FrameSource, Protocol):
    def stop(self) -> None: ...


@dataclass
class CameraSource:
    """A camera's opened source and what the reader needs to know about it."""

    camera_id: str
    source: StoppableSource
    every: float
    pairs: bool  # the source has a frame rate, so the next frame is a close pair
    size: tuple[int, int] | None  # (width, height) if known before reading
    nominal_fps: float | None = None


def open_camera(site: Site, index: int, camera: Camera, *, loop: bool = True) -> CameraSource:
    """The camera's source, or SourceError naming the camera field when it cannot be used."""
    where = f"cameras[{index}].source"
    every = camera.sampling.seconds
    location = site.resolve_source(camera)
    if is_stream_url(location):
        stream = StreamSource(location, None, name=f"{camera.id} ({redact(location)})")
        return CameraSource(camera.id, stream, every, pairs=True, size=None)
    path = Path(location)
    try:
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder")
        if path.is_dir():
            files = FolderSource(path).files
            return CameraSource(camera.id, _paced(files, every, loop, camera.id), every, pairs=False,
                                size=None)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            video = LoopingVideoSource(path, loop=loop, name=camera.id)
            return CameraSource(camera.id, video, every, pairs=True, size=video.size, nominal_fps=video.fps)
        if path.suffix.lower() in IMAGE_SUFFIXES or is_image_file(path):
            return CameraSource(camera.id, _paced([path], every, loop, camera.id), every, pairs=False,
                                size=None)
        raise SourceError(f"{path}: not a video, an image, a folder of images or a stream URL")
    except SourceError as exc:
        raise SourceError(f"{where}: {exc}") from None


def _paced(files: list[Path], every: float, loop: bool, name: str) -> PacedImagesSource:
    return PacedImagesSource(files, every, loop=loop, name=name)


def probe_size(cam: CameraSource) -> tuple[int, int] | None:
    """(width, height) of a camera's frames without starting it; None for streams."""
    if cam.size is not None:
        return cam.size
    if isinstance(cam.source, PacedImagesSource):
        return cam.source.first_size()
    return None


class CameraReader:
    """The reader thread of one camera; ``health()`` may be called from any thread."""

    def __init__(self, cam: CameraSource, slots: LatestSlots[Sample]) -> None:
        self.cam = cam
        self.slots = slots
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{cam.camera_id}", daemon=True)
        self._status = "connecting"
        self._frames = 0
        self._samples = 0
        self._errors = 0
        self._last_error = ""
        self._last_frame_ts: float | None = None
        self._fps = 0.0

    @property
    def camera_id(self) -> str:
        return self.cam.camera_id

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.cam.source.stop()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def _stream_health(self) -> StreamHealth | None:
        source = self.cam.source
        return source.health if isinstance(source, StreamSource) else None

    def health(self) -> CameraHealth:
        stream = self._stream_health()
        dropped = self.slots.stats[self.camera_id].dropped if self.camera_id in self.slots.stats else 0
        status = self._status
        gaps, reconnects, last_gap = 0, 0, None
        errors, last_error = self._errors, self._last_error
        if stream is not None:
            if status not in ("failed", "stopped"):
                status = stream.status
            gaps, reconnects = len(stream.gaps), stream.reconnects
            errors += stream.errors
            last_error = last_error or stream.last_error
            if stream.gaps:
                gap = stream.gaps[-1]
                last_gap = (gap.end if gap.end is not None else time.time()) - gap.start
        skipped = getattr(self.cam.source, "skipped", None)  # undecodable frames, unreadable files
        if skipped:
            if isinstance(self.cam.source, PacedImagesSource):
                errors += skipped.total  # an image source skips them itself: the reader never sees them
            errors += getattr(self.cam.source, "corrupt_frames", 0)  # a video's unreadable frames, likewise
            last_error = last_error or f"skipped {skipped[-1].source}: {skipped[-1].reason}"
        return CameraHealth(self.camera_id, status, round(self._fps, 2), self._last_frame_ts, self._frames,
                            self._samples, dropped, errors, reconnects, gaps, last_gap, last_error)

    def _pair_dt(self, first_ts: float, second_ts: float) -> float:
        stream = self._stream_health()
        fps = (stream.fps if stream is not None and stream.fps > 0 else None) or self.cam.nominal_fps
        dt = second_ts - first_ts
        if fps and not (1.0 / (fps * DT_TOLERANCE) <= dt <= DT_TOLERANCE / fps):
            return 1.0 / fps
        return dt if dt > 0 else 1.0 / (fps or 25.0)

    def _grabs(self) -> Iterator[Grab]:
        """The source's frames as grabs: decoded lazily where the source can (video, streams)."""
        source = self.cam.source
        grabs = getattr(source, "grabs", None)
        if grabs is not None:
            yield from grabs()
            return
        for frame in source:  # still images: one read per sample anyway
            ts = frame.timestamp if frame.timestamp is not None else time.time()
            yield Grab(frame.source, frame.index, ts, functools.partial(_held, frame.image))

    def _run(self) -> None:
        every = self.cam.every
        next_due = 0.0
        # (ts, image, index, decode seconds) of a sample awaiting its pair
        pending: tuple[float, np.ndarray, int, float] | None = None
        rate_t0, rate_n = time.monotonic(), 0
        try:
            for grab in self._grabs():
                if self._stop.is_set():
                    break
                ts = grab.timestamp
                self._frames += 1
                self._last_frame_ts = ts
                self._status = "up"
                rate_n += 1
                if (elapsed := time.monotonic() - rate_t0) >= 2.0:
                    self._fps, rate_t0, rate_n = rate_n / elapsed, time.monotonic(), 0
                if pending is not None:
                    first_ts, first, index, spent = pending
                    pending = None
                    t0 = time.perf_counter()
                    second = grab.decode()
                    spent += time.perf_counter() - t0
                    if second is None:  # no close pair this time: count the frame, skip the flow
                        self._offer(Sample(self.camera_id, first_ts, first, frame_index=index,
                                           decode_s=spent))
                    else:
                        self._offer(Sample(self.camera_id, first_ts, first, second,
                                           self._pair_dt(first_ts, ts), frame_index=index, decode_s=spent))
                    continue
                if ts < next_due:
                    continue  # grabbed only: no colour conversion, no copy
                t0 = time.perf_counter()
                image = grab.decode()
                spent = time.perf_counter() - t0
                if image is None:
                    self._errors += 1
                    continue  # the next frame is sampled instead
                next_due = (math.floor(ts / every) + 1) * every
                if self.cam.pairs:
                    pending = (ts, image, grab.index, spent)
                else:
                    self._offer(Sample(self.camera_id, ts, image, frame_index=grab.index, decode_s=spent))
            self._status = "stopped" if self._stop.is_set() else "ended"
        except Exception as exc:  # a reader must fail alone and say why, never take the runner down
            self._status = "failed"
            self._errors += 1
            self._last_error = str(exc)
            log.error("camera %s: reader failed: %s", self.camera_id, exc)

    def _offer(self, sample: Sample) -> None:
        self._samples += 1
        self.slots.put(self.camera_id, sample)


def _held(image: np.ndarray) -> np.ndarray:
    return image
