"""Count drift of a reduced-precision engine against fp32 on real crowd images.

Drift is measured on counts, not on density maps, because the count is what users act on:
small per-cell errors that cancel are harmless, a bias that adds up across a dense crowd is
not. Both the mean per-image drift and the aggregate (sum over all images) are reported,
since a few sparse images with tiny counts can dominate the first and hide in the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdsafe.counting.calibrate import list_images, load_batch
from crowdsafe.counting.engines import Engine


@dataclass(frozen=True)
class DriftReport:
    """Per-image and aggregate |count - fp32 count| in percent of the fp32 count."""

    images: int
    mean_abs_pct: float
    max_abs_pct: float
    aggregate_pct: float

    def as_dict(self) -> dict[str, float | int]:
        return {"images": self.images, "mean_abs_pct": self.mean_abs_pct,
                "max_abs_pct": self.max_abs_pct, "aggregate_pct": self.aggregate_pct}


def drift(reference: Sequence[float], candidate: Sequence[float]) -> DriftReport:
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError("need the same, non-zero number of reference and candidate counts")
    per_image = np.abs(cand - ref) / np.maximum(np.abs(ref), 1e-6) * 100.0
    aggregate = abs(cand.sum() - ref.sum()) / max(abs(ref.sum()), 1e-6) * 100.0
    return DriftReport(images=int(ref.size), mean_abs_pct=float(per_image.mean()),
                       max_abs_pct=float(per_image.max()), aggregate_pct=float(aggregate))


def dataset_images(root: Path, per_dataset: int | None = None) -> dict[str, list[Path]]:
    """Images of every dataset folder under ``root``, evenly thinned to ``per_dataset`` each."""
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = list_images(folder)
        if per_dataset and len(files) > per_dataset:
            step = len(files) / per_dataset
            files = [files[int(i * step)] for i in range(per_dataset)]
        if files:
            found[folder.name] = files
    return found


def counts(engine: Engine, paths: Sequence[Path], max_side: int | None) -> list[float]:
    """One count per image; images are downscaled to ``max_side`` so the check stays fast."""
    return [float(engine.infer(load_batch(p, max_side)).sum(dtype=np.float64)) for p in paths]
