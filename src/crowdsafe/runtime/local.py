"""Counting in this process: one reader thread per camera, the site's engines in the runner's worker.

The runner core (``runtime.core``) does everything else; this strategy only turns the newest
sample of each camera into a :class:`CountedFrame`, round-robin across cameras
(:class:`LatestSlots`), with each camera's own counter (``runtime.counters``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from crowdsafe.counting.counter import CountsCameras, DensityResult
from crowdsafe.runtime.camera import CameraReader, Sample
from crowdsafe.runtime.core import PreparedSite, RunnerConfig, SiteRunner
from crowdsafe.runtime.pipeline import CountedFrame, FrameFit, FrameOutput, count_frame
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.store.store import Store

log = logging.getLogger(__name__)


class InProcessCounting:
    """The :class:`~crowdsafe.runtime.core.Counting` strategy of a one-machine run."""

    #: Frames are counted one at a time on the runner's counting thread: their stages' times
    #: add up to the pipeline's (``RunSummary.busy_s``); counted elsewhere, in parallel, they do not.
    counts_on_runner_thread = True

    def __init__(self, prepared: PreparedSite, counters: CountsCameras) -> None:
        if not callable(getattr(counters, "count_camera", None)):  # a bare counter: say so now, not per frame
            raise TypeError("counters must count per camera: CameraCounters, or EveryCamera(counter)")
        self.counters = counters
        self.fit = FrameFit(prepared.geometry)
        self.slots: LatestSlots[Sample] = LatestSlots()
        self.readers = [CameraReader(cam, self.slots) for cam in prepared.cameras]
        self.errors = 0
        # The measuring thread's rare inference (a background check) takes turns with the frames':
        # an engine's compiled model runs one inference at a time.
        self._engine = threading.Lock()

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult:
        with self._engine:
            return self.counters.count_camera(camera_id, image_bgr)

    def open(self) -> None:
        """The engines were built with the counters; OpenCV is held to the calling thread.

        Its parallel loops (optical flow, resizing, colour conversion) would otherwise wake a
        worker per core, each spinning a while after its share: on a machine whose cores the
        engine already holds, that is CPU taken from the engine for work one thread does in
        less CPU time.
        """
        cv2.setNumThreads(1)

    def start(self, stop: threading.Event) -> None:
        for reader in self.readers:
            reader.start()

    def next(self, timeout: float) -> CountedFrame | None:
        item = self.slots.take(timeout=timeout)
        if item is None:
            return None
        sample = item[1]
        del item
        try:
            with self._engine:
                return count_frame(self.counters, self.fit, sample)
        except Exception as exc:  # one bad frame must not stop the site
            self.errors += 1
            log.exception("camera %s: frame at %.3f failed: %s", sample.camera_id, sample.ts, exc)
            return None

    @property
    def finished(self) -> bool:
        return all(r.finished for r in self.readers) and self.slots.depth() == 0

    def drain(self) -> Iterator[CountedFrame]:
        return iter(())  # the worker counts one frame at a time and hands it on before the next

    def close(self) -> None:
        """Nothing to release: reader threads were stopped and joined by the core."""


def local_runner(prepared: PreparedSite, store: Store, counters: CountsCameras, config: RunnerConfig, *,
                 on_frame: Callable[[FrameOutput], None] | None = None) -> SiteRunner:
    """The runner core with every frame counted in this process."""
    return SiteRunner(prepared, store, InProcessCounting(prepared, counters), config, on_frame=on_frame)
