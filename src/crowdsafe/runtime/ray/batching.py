"""Dynamic batching: frames of many cameras counted in one engine call.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray.batching``."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crowdsafe.counting.counter import DensityCounter, DensityResult, to_batch, validate_image

log = logging.getLogger(__name__)


@dataclass
class _Request:
    image: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: DensityResult | None = None
    error: BaseException | None = None
    batch: int = 0


@dataclass
class BatchStats:
    calls: int = 0
    frames: int = 0
    sizes: Counter[int] = field(default_factory=Counter)  # batch size -> engine calls

    @property
    def mean_batch(self) -> float:
        return self.frames / self.calls if self.calls else 0.0


class DynamicBatcher:
    """Thread-safe ``count``: concurrent calls are served by shared engine batches."""

    def __init__(self, counter: DensityCounter, *, max_batch: int = 16, max_wait_s: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.counter = counter
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def count(self, image_bgr: np.ndarray) -> tuple[DensityResult, int]:
        """The frame's density and the size of the batch it ran in; ImageError before queueing."""
        request = _Request(validate_image(image_bgr))
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result, request.batch

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5.0)

    def _collect(self, first: _Request) -> list[_Request]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # keep the close request for the main loop
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            groups: dict[tuple[int, ...], list[_Request]] = {}
            for request in self._collect(first):
                groups.setdefault(request.image.shape, []).append(request)
            for shape, requests in groups.items():
                if shape[0] * shape[1] > self.counter.tile_pixels:
                    for request in requests:  # tiled frames: one at a time, through the counter
                        self._serve([request], lambda r: [self.counter.count(r[0].image)])
                else:
                    self._serve(requests, self._infer)

    def _infer(self, requests: list[_Request]) -> list[DensityResult]:
        batch = np.concatenate([to_batch(r.image) for r in requests])
        density = self.counter.engine.infer(batch)
        h, w = requests[0].image.shape[:2]
        return [DensityResult(density[i, 0].astype(np.float32, copy=False), h, w)
                for i in range(len(requests))]

    def _serve(self, requests: list[_Request],
               run: Callable[[list[_Request]], list[DensityResult]]) -> None:
        try:
            results = run(requests)
        except Exception as exc:  # the error belongs to these frames only
            log.error("batch of %d frames failed: %s", len(requests), exc)
            for request in requests:
                request.error = exc
                request.done.set()
            return
        self.stats.calls += 1
        self.stats.frames += len(requests)
        self.stats.sizes[len(requests)] += 1
        for request, result in zip(requests, results, strict=True):
            request.result, request.batch = result, len(requests)
            request.done.set()
