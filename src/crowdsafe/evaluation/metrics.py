"""Counting accuracy metrics as plain functions of predicted and true counts.

Pure and dependency-light on purpose: reports, tests and notebooks must agree on what
"MAE" means, so there is exactly one definition of each number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def _errors(predicted: Sequence[float], truth: Sequence[float]) -> list[float]:
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} ground-truth counts")
    if not predicted:
        raise ValueError("no images to compute metrics on")
    return [float(p) - float(t) for p, t in zip(predicted, truth, strict=True)]


def mae(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Mean absolute error, in people per image: the headline number in the literature."""
    errors = _errors(predicted, truth)
    return sum(abs(e) for e in errors) / len(errors)


def rmse(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Root mean squared error (called "MSE" in many crowd-counting papers); punishes outliers."""
    errors = _errors(predicted, truth)
    return math.sqrt(sum(e * e for e in errors) / len(errors))


def bias(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Mean signed error: positive when the model over-counts on average."""
    errors = _errors(predicted, truth)
    return sum(errors) / len(errors)


def relative_error(predicted: Sequence[float], truth: Sequence[float]) -> float | None:
    """Mean of |error| / true count over images with people; None if none has any.

    Makes sparse and dense scenes comparable (an error of 10 matters at 20 people, not at
    2000). Images with a true count of zero have no relative error and are left out.
    """
    errors = _errors(predicted, truth)
    ratios = [abs(e) / float(t) for e, t in zip(errors, truth, strict=True) if t > 0]
    return sum(ratios) / len(ratios) if ratios else None


def pearson(predicted: Sequence[float], truth: Sequence[float]) -> float | None:
    """Pearson correlation; None when undefined (fewer than two images, or a constant side)."""
    _errors(predicted, truth)
    n = len(predicted)
    if n < 2:
        return None
    mp, mt = sum(predicted) / n, sum(truth) / n
    dp = [float(p) - mp for p in predicted]
    dt = [float(t) - mt for t in truth]
    sp, st = math.sqrt(sum(d * d for d in dp)), math.sqrt(sum(d * d for d in dt))
    if sp == 0 or st == 0:
        return None
    return max(-1.0, min(1.0, sum(a * b for a, b in zip(dp, dt, strict=True)) / (sp * st)))


def interval_coverage(intervals: Sequence[tuple[float, float] | None],
                      truth: Sequence[float]) -> float | None:
    """Share of images whose true count lies in its interval; None when none has one."""
    pairs = [(iv, t) for iv, t in zip(intervals, truth, strict=True) if iv is not None]
    if not pairs:
        return None
    return sum(lo <= t <= hi for (lo, hi), t in pairs) / len(pairs)


def sec_per_image(total_seconds: float, n: int) -> float | None:
    return total_seconds / n if n > 0 else None


@dataclass(frozen=True)
class Metrics:
    """All metrics for one dataset, keyed as in ``crowdsafe eval --json``."""

    n: int
    mae: float
    rmse: float
    bias: float
    corr: float | None
    rel_err: float | None
    sec_per_image: float | None
    #: Share of true counts inside the reported (nominal 90 %) intervals.
    coverage: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(predicted: Sequence[float], truth: Sequence[float],
                    seconds: float | None = None,
                    intervals: Sequence[tuple[float, float] | None] | None = None) -> Metrics:
    """Every metric at once; ``seconds`` is the total inference time, if measured."""
    return Metrics(
        n=len(_errors(predicted, truth)), mae=mae(predicted, truth), rmse=rmse(predicted, truth),
        bias=bias(predicted, truth), corr=pearson(predicted, truth),
        rel_err=relative_error(predicted, truth),
        sec_per_image=None if seconds is None else sec_per_image(seconds, len(predicted)),
        coverage=None if intervals is None else interval_coverage(intervals, truth),
    )
