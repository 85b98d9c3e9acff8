"""Running the counter over a labelled dataset and scoring it.

Time is measured around the counter call only (pre-processing, inference, summing), not
around JPEG decoding: ``sec_per_image`` is meant to compare engines and precisions, and
disk and decoder speed would blur that. For the same reason the first image is counted once
untimed before the run: OpenVINO compiles the model for each new input size, a one-off
cost a camera pays once, not per frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from crowdsafe.counting.counter import Counts
from crowdsafe.evaluation.dataset import Dataset, DatasetError
from crowdsafe.evaluation.metrics import Metrics, compute_metrics
from crowdsafe.sources.frames import SourceError
from crowdsafe.sources.images import read_image


@dataclass(frozen=True)
class ImageResult:
    name: str
    truth: float
    predicted: float
    seconds: float
    interval: tuple[float, float] | None = None
    model: str = "dense"


@dataclass(frozen=True)
class DatasetResult:
    dataset: str
    metrics: Metrics
    images: tuple[ImageResult, ...]


def evaluate_dataset(dataset: Dataset, counter: Counts, limit: int | None = None,
                     on_progress: Callable[[], None] | None = None,
                     warm_up: bool = True) -> DatasetResult:
    """Counts for the first ``limit`` images (all when None) and their metrics.

    An unreadable image is an error, not a skip: metrics over a silently smaller set would
    not be comparable with anyone else's.
    """
    items = dataset.images[:limit] if limit is not None else dataset.images
    results = []
    for position, item in enumerate(items):
        try:
            image = read_image(item.path)
        except SourceError as exc:
            raise DatasetError(f"dataset {dataset.name}: {exc}") from None
        if warm_up and position == 0:
            counter.count(image)
        start = time.perf_counter()
        result = counter.count(image)
        seconds = time.perf_counter() - start
        results.append(ImageResult(item.name, item.count, result.count, seconds,
                                   getattr(result, "interval", None), getattr(result, "model", "dense")))
        if on_progress is not None:
            on_progress()
    metrics = compute_metrics([r.predicted for r in results], [r.truth for r in results],
                              seconds=sum(r.seconds for r in results),
                              intervals=[r.interval for r in results])
    return DatasetResult(dataset.name, metrics, tuple(results))
