"""Frozen-layer features, computed once per training image and cached as fp16 on disk.

The frozen part of CSRNet (VGG frontend and, by default, the first two backend convs) is
most of the compute; running it once with the OpenVINO engine, instead of in torch every
epoch, is what makes CPU fine-tuning fit in well under an hour. The cache lives in the user
cache (never in the repository) keyed by the cut layer and the engine precision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crowdsafe.counting.counter import to_batch, validate_image
from crowdsafe.counting.graph import INPUT_NAME, build_model
from crowdsafe.counting.weights import NPZ_SHA256, cache_dir, load_weights
from crowdsafe.sources.images import read_image
from crowdsafe.training.data import SIGMA_PX, TrainImage, density_target


@dataclass(frozen=True)
class CachedSample:
    """One image's (optionally mirrored) frozen features and its density target on disk."""

    name: str
    features: Path  # (C, H/8, W/8) float16 .npy
    target: Path  # (H/8, W/8) float32 .npy


def feature_dir(cut: str, precision: str) -> Path:
    return cache_dir() / "train-features" / f"{NPZ_SHA256[:12]}-{cut}-{precision}"


class FeatureExtractor:
    """Runs the network up to ``cut`` (inclusive) with OpenVINO; one compile per image shape."""

    def __init__(self, cut: str, precision: str = "fp32", threads: int | None = None) -> None:
        import openvino as ov

        self._core = ov.Core()
        proto = build_model(load_weights(), stop_after=cut).SerializeToString()
        self._model = self._core.read_model(proto, b"")
        self._config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._compiled: dict[tuple[int, ...], object] = {}

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        batch = to_batch(validate_image(image_bgr))
        compiled = compiled_for(self._core, self._model, self._config, self._compiled, tuple(batch.shape))
        return np.asarray(compiled({INPUT_NAME: batch})[0])[0]  # type: ignore[operator]


def compiled_for(core: Any, model: Any, config: dict[str, object], held: dict[tuple[int, ...], object],
                 shape: tuple[int, ...]) -> Any:
    """``model`` compiled by OpenVINO for input ``shape``; ``held`` keeps one shape at a time
    (a compiled network holds about 100 MB, and training sizes rarely repeat, a camera's never
    change)."""
    compiled = held.get(shape)
    if compiled is None:
        reshaped = model.clone()
        reshaped.reshape({INPUT_NAME: list(shape)})
        compiled = core.compile_model(reshaped, "CPU", config)
        held.clear()
        held[shape] = compiled
    return compiled


def _key(image: TrainImage, flip: bool, scale: float = 1.0) -> str:
    digest = hashlib.sha256(image.path.read_bytes()).hexdigest()[:12]
    sized = "" if scale == 1.0 else f"-x{scale:g}"
    return f"{image.path.stem}-{digest}{'-flip' if flip else ''}{sized}"


def _variant(image: TrainImage, flip: bool, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixels and head points of one training variant (resized, then mirrored)."""
    pixels = read_image(image.path)
    points = image.points.copy()
    if scale != 1.0:
        size = (max(round(pixels.shape[1] * scale), 64), max(round(pixels.shape[0] * scale), 64))
        points[:, 0] *= size[0] / pixels.shape[1]
        points[:, 1] *= size[1] / pixels.shape[0]
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if scale < 1
                            else cv2.INTER_LINEAR)
    if flip:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        points[:, 0] = pixels.shape[1] - 1 - points[:, 0]
    return pixels, points


def cache_features(images: list[TrainImage], cut: str, precision: str = "fp32", *,
                   flips: bool = False, scales: tuple[float, ...] = (1.0,),
                   sigma: float = SIGMA_PX,
                   threads: int | None = None,
                   on_progress: Callable[[], None] | None = None) -> list[CachedSample]:
    """Features and targets for every image, its mirror image (``flips``) and resized copies
    (``scales``, people smaller or larger than in the original); reuses the cache.

    Mirrored copies are real forward passes of the mirrored image, not mirrored features:
    VGG filters are not mirror-symmetric, so flipping a feature map is not the same input.
    Resized copies are the image resampled (area filter when shrinking) with the head points
    scaled alike, so a model trained on them counts people at more than one size. Mirrors are
    made of the original size only.
    """
    out_dir = feature_dir(cut, precision)
    out_dir.mkdir(parents=True, exist_ok=True)
    extractor: FeatureExtractor | None = None
    samples = []
    variants = [(False, 1.0)] + ([(True, 1.0)] if flips else []) + \
        [(False, float(s)) for s in scales if s != 1.0]
    if 1.0 not in scales:
        variants.remove((False, 1.0))
    for image in images:
        for flip, scale in variants:
            key = _key(image, flip, scale)
            feat_path = out_dir / f"{key}.f16.npy"
            target_path = out_dir / f"{key}.target-s{sigma:g}.npy"
            if not (feat_path.is_file() and target_path.is_file()):
                pixels, points = _variant(image, flip, scale)
                h, w = pixels.shape[:2]
                if not feat_path.is_file():
                    if extractor is None:
                        extractor = FeatureExtractor(cut, precision, threads)
                    features = extractor(pixels).astype(np.float16)
                    partial = feat_path.with_suffix(".partial.npy")
                    np.save(partial, features)
                    partial.replace(feat_path)
                target = density_target(points, h, w, sigma)
                feature_shape = np.load(feat_path, mmap_mode="r").shape
                if target.shape != feature_shape[1:]:
                    raise RuntimeError(f"{image.name}: target {target.shape} vs features "
                                       f"{feature_shape}")
                np.save(target_path, target)
            samples.append(CachedSample(image.name + (" (mirrored)" if flip else "")
                                        + ("" if scale == 1.0 else f" (x{scale:g})"),
                                        feat_path, target_path))
        if on_progress is not None:
            on_progress()
    return samples
