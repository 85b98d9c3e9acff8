"""A camera reader as a Ray actor: decode where the camera is, send on only sampled frames.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray.reader``."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from crowdsafe.config.site import Site
from crowdsafe.runtime.camera import CameraHealth, CameraReader, Sample, open_camera
from crowdsafe.runtime.ray.wire import Encoding, WireSample, encode_sample, node_id
from crowdsafe.runtime.slots import LatestSlots

ENDED = "ended"  # take() result once a non-looping source has run out


@dataclass(frozen=True)
class ReaderOptions:
    encoding: Encoding = "jpeg"
    quality: int = 90
    size: tuple[int, int] | None = None  # calibration (width, height): frames leave at this size
    keep_pair: bool = True  # only cameras that measure a line need the flow pair
    loop: bool = True


@dataclass(frozen=True)
class ReaderInfo:
    camera_id: str
    pid: int
    node_id: str
    restarted: bool


class ReaderActor:
    def __init__(self, site: Site, index: int, options: ReaderOptions) -> None:
        self.options = options
        self.camera = open_camera(site, index, site.cameras[index], loop=options.loop)
        self.slots: LatestSlots[Sample] = LatestSlots()
        self.reader = CameraReader(self.camera, self.slots)
        self.restarted = _restarted()
        self._started = False
        if self.restarted:  # a replacement after a crash: the run is on, read at once
            self.start()

    def start(self) -> None:
        """Start reading (the runner calls it when the run starts, not while engines load)."""
        if not self._started:
            self._started = True
            self.reader.start()

    def info(self) -> ReaderInfo:
        return ReaderInfo(self.camera.camera_id, os.getpid(), node_id(), self.restarted)

    def take(self, timeout_s: float = 1.0) -> WireSample | str | None:
        """The newest sample (encoded), None if none came within the timeout, ENDED at the end."""
        self.start()
        item = self.slots.take(timeout=timeout_s)
        if item is None:
            return ENDED if self.reader.finished and self.slots.depth() == 0 else None
        _, sample = item
        o = self.options
        return encode_sample(sample, o.encoding, quality=o.quality, size=o.size, keep_pair=o.keep_pair)

    def health(self) -> CameraHealth:
        return self.reader.health()

    def stop(self, join_s: float = 2.0) -> CameraHealth:
        """Stop reading; the final health snapshot (status ``stopped``, or ``ended``)."""
        self.reader.stop()
        self.slots.close()
        self.reader.join(join_s)
        return self.reader.health()


def _restarted() -> bool:
    """True in an actor that Ray re-created after it died (False outside Ray)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    with warnings.catch_warnings():  # Ray 2.60 warns about its own use of a deprecated property here
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
