"""Counting a whole source (image, folder, video) into a report; shared by CLI commands.

The command-line tools only format what this returns, so ``count``, ``demo`` and any later
service produce the same numbers from the same frames. A frame that cannot be counted (too
small, too large) is skipped and reported like an undecodable one rather than ending the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crowdsafe.counting.counter import Counts, DensityCounter, DensityResult, ImageError, validate_image
from crowdsafe.counting.engines import Engine, EngineSpec, create_engine
from crowdsafe.sources.frames import Frame, FrameSource, SkippedFrame


def make_counter(spec: EngineSpec) -> DensityCounter:
    """The one place commands build a counter (tests swap it for a shared instance)."""
    return DensityCounter(create_engine(spec))


class LazyCounter:
    """Starts the engine on the first countable frame, so bad input fails in milliseconds.

    Building an engine takes seconds (model load and compile); a user who typed the wrong
    path or passed a thumbnail should not wait for that to be told.
    """

    def __init__(self, factory: Callable[[], Counts]) -> None:
        self._factory = factory
        self._counter: Counts | None = None

    @property
    def engine(self) -> Engine | None:
        return getattr(self._counter, "engine", None)

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        validate_image(image_bgr)
        if self._counter is None:
            self._counter = self._factory()
        return self._counter.count(image_bgr)


@dataclass(frozen=True)
class FrameCount:
    """The count for one frame; ``timestamp`` in seconds for videos, None for images."""

    source: str
    index: int
    timestamp: float | None
    count: float
    interval: tuple[float, float] | None = None
    model: str = "dense"


@dataclass
class CountReport:
    """Everything a count run produced: per-frame counts, what was skipped, how long it took."""

    source: str
    counts: list[FrameCount] = field(default_factory=list)
    skipped: list[SkippedFrame] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_count(self) -> float | None:
        if not self.counts:
            return None
        return sum(c.count for c in self.counts) / len(self.counts)


FrameCallback = Callable[[Frame, DensityResult], None]


def run_count(source: FrameSource, counter: Counts, *,
              on_frame: FrameCallback | None = None,
              on_progress: Callable[[], None] | None = None) -> CountReport:
    """Count every frame ``source`` yields.

    ``on_frame`` sees each frame with its density (e.g. to draw a heatmap) while the pixels
    are still in memory; ``on_progress`` is called once per frame handled, counted or not.
    """
    report = CountReport(source=source.name)
    start = time.perf_counter()
    for frame in source:
        try:
            result = counter.count(frame.image)
        except ImageError as exc:
            report.skipped.append(SkippedFrame(frame.source, frame.index, str(exc)))
        else:
            report.counts.append(FrameCount(frame.source, frame.index, frame.timestamp,
                                            result.count, getattr(result, "interval", None),
                                            getattr(result, "model", "dense")))
            if on_frame is not None:
                on_frame(frame, result)
        if on_progress is not None:
            on_progress()
    report.seconds = time.perf_counter() - start
    report.skipped = [*source.skipped, *report.skipped]
    report.skipped.sort(key=lambda s: (s.index is None, s.index or 0))
    return report
