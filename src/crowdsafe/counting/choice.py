"""Which model counts a camera: ``dense``, ``sparse`` or ``auto``.

Why and how: docs/design-notes.md, ``crowdsafe.counting.choice``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from crowdsafe.counting import batch
from crowdsafe.counting.counter import Counts, DensityCounter, DensityResult, validate_image
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.variants import ModelChoice, ModelName

SPARSE_MIN_PERSON_PX = 48.0
DENSE_ABOVE_PER_MPX = 282.1


def choose_from_person_px(person_px: np.ndarray) -> ModelName:
    """Rule 1: ``sparse`` when the median known person height is at least the threshold."""
    values = np.asarray(person_px, np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise ValueError("calibration gives no person height inside the image")
    return "sparse" if float(np.median(values)) >= SPARSE_MIN_PERSON_PX else "dense"


def is_dense_scene(sparse_count: float, height: int, width: int,
                   threshold: float = DENSE_ABOVE_PER_MPX) -> bool:
    """Rule 2: the sparse model's own count per megapixel says the crowd is dense."""
    return sparse_count / (height * width / 1e6) > threshold


class AutoCounter:
    """Rule 2 per image: sparse first, dense when the scene test says so (engines built lazily)."""

    def __init__(self, sparse: Callable[[], DensityCounter], dense: Callable[[], DensityCounter],
                 threshold: float = DENSE_ABOVE_PER_MPX) -> None:
        self._factories = {"sparse": sparse, "dense": dense}
        self._counters: dict[str, DensityCounter] = {}
        self.threshold = threshold

    def _get(self, model: str) -> DensityCounter:
        if model not in self._counters:
            self._counters[model] = self._factories[model]()
        return self._counters[model]

    @property
    def engine(self) -> object | None:
        counter = self._counters.get("sparse") or self._counters.get("dense")
        return None if counter is None else counter.engine

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        image = validate_image(image_bgr)
        result = self._get("sparse").count(image)
        if is_dense_scene(result.count, result.image_height, result.image_width, self.threshold):
            return self._get("dense").count(image)
        return result


def make_model_counter(choice: ModelChoice, spec: EngineSpec, person_px: np.ndarray | None = None, *,
                       factory: Callable[[EngineSpec], Counts] = batch.make_counter) -> Counts:
    """The counter for a camera's ``model`` setting; ``person_px`` (calibration) enables rule 1."""
    if choice == "auto" and person_px is not None:
        choice = choose_from_person_px(person_px)
    if choice in ("dense", "sparse"):
        return factory(replace(spec, model=choice))
    if choice != "auto":
        raise ValueError(f"unknown model {choice!r}; expected dense, sparse or auto")
    return AutoCounter(lambda: factory(replace(spec, model="sparse")),  # type: ignore[arg-type]
                       lambda: factory(replace(spec, model="dense")))  # type: ignore[arg-type]
