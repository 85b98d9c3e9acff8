"""Count intervals from errors measured on held-out TRAIN images (split conformal).

The residual of one image is ``r = log((truth + 1) / (count + 1))``: multiplicative errors
grow with the count, and the +1 keeps empty scenes finite. Images of the validation split
(never the dev/test sets) are sorted by predicted count into bins of at least
``MIN_PER_BIN`` images; each bin keeps the conformal quantiles of its residuals for the
nominal level. A new count takes the bin its own value falls in. Coverage is then measured
on the dev sets, where it can honestly miss the nominal level: the table states what was
fitted, ``crowdsafe eval`` reports what it achieved.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

INTERVALS_RESOURCE = "intervals.json"
MIN_PER_BIN = 15


@dataclass(frozen=True)
class IntervalTable:
    model: str
    level: float
    upper_edges: tuple[float, ...]  # bin i holds predicted counts < upper_edges[i]; last is inf
    lo: tuple[float, ...]  # log-ratio quantile per bin
    hi: tuple[float, ...]
    fitted_on: str = ""

    def interval(self, count: float) -> tuple[float, float]:
        index = next((i for i, edge in enumerate(self.upper_edges) if count < edge),
                     len(self.upper_edges) - 1)
        base = max(count, 0.0) + 1.0
        return (max(base * math.exp(self.lo[index]) - 1.0, 0.0),
                max(base * math.exp(self.hi[index]) - 1.0, 0.0))

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["upper_edges"] = [e if math.isfinite(e) else None for e in self.upper_edges]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> IntervalTable:
        edges = tuple(math.inf if e is None else float(e) for e in data["upper_edges"])  # type: ignore[union-attr]
        return cls(str(data["model"]), float(data["level"]), edges,  # type: ignore[arg-type]
                   tuple(float(v) for v in data["lo"]), tuple(float(v) for v in data["hi"]),  # type: ignore[union-attr]
                   str(data.get("fitted_on", "")))


def _conformal_quantile(values: np.ndarray, q: float) -> float:
    """Finite-sample-valid quantile: rank ceil((n+1) q) of n, clamped to the sample."""
    n = len(values)
    ordered = np.sort(values)
    rank = min(max(math.ceil((n + 1) * q), 1), n)
    return float(ordered[rank - 1])


def fit_table(model: str, predicted: list[float], truth: list[float], level: float = 0.9,
              min_per_bin: int = MIN_PER_BIN, fitted_on: str = "") -> IntervalTable:
    if len(predicted) != len(truth) or len(predicted) < 2:
        raise ValueError("need at least two (predicted, truth) pairs to fit an interval table")
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    r = np.log((t + 1.0) / (np.maximum(p, 0.0) + 1.0))
    order = np.argsort(p)
    n_bins = max(len(p) // min_per_bin, 1)
    groups = np.array_split(order, n_bins)
    edges, lo, hi = [], [], []
    alpha = (1.0 - level) / 2.0
    for i, group in enumerate(groups):
        res = r[group]
        lo.append(-_conformal_quantile(-res, 1.0 - alpha))
        hi.append(_conformal_quantile(res, 1.0 - alpha))
        last = i == len(groups) - 1
        edges.append(math.inf if last else float((p[group].max() + p[groups[i + 1]].min()) / 2))
    return IntervalTable(model, level, tuple(edges), tuple(lo), tuple(hi), fitted_on)


def coverage(table: IntervalTable, predicted: list[float], truth: list[float]) -> float:
    """Share of images whose true count lies inside its interval."""
    inside = 0
    for p, t in zip(predicted, truth, strict=True):
        lo, hi = table.interval(p)
        inside += lo <= t <= hi
    return inside / len(predicted)


def load_tables(path: Path | None = None) -> dict[str, IntervalTable]:
    """Shipped tables by model name; empty when this install has none."""
    try:
        text = path.read_text() if path else \
            resources.files("crowdsafe.counting").joinpath(INTERVALS_RESOURCE).read_text()
    except FileNotFoundError:
        return {}
    return {name: IntervalTable.from_dict(d) for name, d in json.loads(text)["tables"].items()}


def save_tables(tables: dict[str, IntervalTable], path: Path) -> None:
    payload = {"comment": "written by `crowdsafe train --calibrate-with`; see MODEL_CARD.md",
               "tables": {name: t.as_dict() for name, t in tables.items()}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
