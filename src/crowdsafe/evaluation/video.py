"""Accuracy on a video with annotated per-frame counts (``<video stem>_counts.csv`` beside it).

CSV: a header, the frame index (0-based decode order) in the first column and the annotated
count in a column named ``count``. Frames without a row are counted but not scored; a
frame the video cannot decode is an error, as for images, so the set is never silently
smaller.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

from crowdsafe.counting.counter import Counts
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.evaluation.metrics import compute_metrics
from crowdsafe.evaluation.runner import DatasetResult, ImageResult
from crowdsafe.sources.video import VIDEO_SUFFIXES, VideoSource


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def counts_file(video: Path) -> Path:
    return video.with_name(f"{video.stem}_counts.csv")


def load_frame_counts(path: Path) -> dict[int, float]:
    if not path.is_file():
        raise DatasetError(f"{path}: no per-frame counts for this video (expected "
                           "'<frame index>,count' rows)")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if not rows or "count" not in rows[0]:
        raise DatasetError(f"{path}: expected a header with a 'count' column")
    col = rows[0].index("count")
    counts: dict[int, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            counts[int(row[0])] = float(row[col])
        except (ValueError, IndexError):
            raise DatasetError(f"{path}: line {line} is not '<frame index>,...,<count>'") from None
    return counts


def evaluate_video(video: Path, counter: Counts, every: float | None,
                   on_progress: Callable[[], None] | None = None) -> DatasetResult:
    truth = load_frame_counts(counts_file(video))
    source = VideoSource(video, every)
    results = []
    for frame in source:
        start = time.perf_counter()
        result = counter.count(frame.image)
        seconds = time.perf_counter() - start
        if frame.index in truth:
            results.append(ImageResult(f"frame {frame.index}", truth[frame.index], result.count,
                                       seconds, getattr(result, "interval", None),
                                       getattr(result, "model", "dense")))
        if on_progress is not None:
            on_progress()
    if source.skipped:
        raise DatasetError(f"{video}: {len(source.skipped)} frame(s) could not be decoded")
    if not results:
        raise DatasetError(f"{video}: no counted frame has an annotated count")
    metrics = compute_metrics([r.predicted for r in results], [r.truth for r in results],
                              seconds=sum(r.seconds for r in results),
                              intervals=[r.interval for r in results])
    return DatasetResult(video.stem, metrics, tuple(results))
