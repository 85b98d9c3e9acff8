"""The training recipe behind ``crowdsafe train``: features, fine-tuning, post-fit, report.

The command only parses options and prints; everything that decides what the shipped sparse
model is lives here, so it can be run (and read) without the CLI. torch is imported by
``training.loop`` only, i.e. only when a recipe runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdsafe.counting.intervals import IntervalTable, save_tables
from crowdsafe.counting.variants import SPARSE_RESOURCE, merge_layers
from crowdsafe.counting.weights import WeightsError, load_weights, sha256_file
from crowdsafe.training import postfit
from crowdsafe.training.curve import write_curve
from crowdsafe.training.data import TrainImage, load_train_folder, split
from crowdsafe.training.export import write_npz
from crowdsafe.training.features import CachedSample, cache_features
from crowdsafe.training.loop import TrainConfig, trained_specs
from crowdsafe.training.loop import train as run_training

#: ``progress(label, total)`` gives a context whose value is called once per item done.
Progress = Callable[[str, int], AbstractContextManager[Callable[[], None]]]


class RecipeError(ValueError):
    """The recipe's inputs cannot be used; the message names the option."""


@dataclass(frozen=True)
class Recipe:
    """What ``crowdsafe train`` was asked for (its options, checked)."""

    data: Path
    out_dir: Path
    config: TrainConfig
    init_from: Path | None = None
    val: int = 40
    limit: int | None = None
    flips: bool = False
    scales: tuple[float, ...] = (1.0,)
    sigma: float = 4.0
    feature_precision: str = "fp32"
    calibrate_with: Path | None = None
    calibrate_images: int = 40


@dataclass
class RecipeResult:
    layers_path: Path
    report: dict[str, Any]
    tables: dict[str, IntervalTable] | None
    best: str  # one line on the best validation


def run_recipe(recipe: Recipe, *, say: Callable[[str], None], progress: Progress) -> RecipeResult:
    """Cache features, fine-tune, fit the output scale (and intervals), write layers and report."""
    cfg, started = recipe.config, time.perf_counter()
    names = [spec.name for spec in trained_specs(cfg.cut)]
    if cfg.train_from is not None and cfg.train_from not in names:
        raise RecipeError(f"--train-from {cfg.train_from}: expected a conv after --cut {cfg.cut} "
                          f"({', '.join(names)})")
    images = load_train_folder(recipe.data)[:recipe.limit]
    train_images, val_images = split(images, min(recipe.val, len(images) - 1), cfg.seed)
    weights = load_weights()

    def features(of: list[TrainImage], **options: Any) -> list[CachedSample]:
        return cache_features(of, cfg.cut, recipe.feature_precision, sigma=recipe.sigma, threads=cfg.threads,
                              **options)

    with progress("caching features", len(images)) as advance:
        train_samples = features(train_images, flips=recipe.flips, scales=recipe.scales, on_progress=advance)
        val_samples = features(val_images, on_progress=advance)
    extract_s = time.perf_counter() - started
    say(f"features: {len(train_samples)} train samples ({len(train_images)} images"
        f"{', mirrored too' if recipe.flips else ''}, scales {','.join(f'{v:g}' for v in recipe.scales)}), "
        f"{len(val_samples)} validation, {extract_s:.0f} s")

    def on_step(step: int, loss: float) -> None:
        if step % 50 == 0 or step == cfg.steps:
            say(f"step {step}/{cfg.steps} loss {loss:.4f} ({time.perf_counter() - started:.0f} s)")

    def on_eval(step: int, mae: float, bias: float, kind: str) -> None:
        say(f"validation at step {step} ({kind} weights): MAE {mae:.2f}, bias {bias:+.2f} "
            f"({time.perf_counter() - started:.0f} s)")

    start_weights = weights
    if recipe.init_from is not None:
        try:
            with np.load(recipe.init_from, allow_pickle=False) as npz:
                start_weights = merge_layers(weights, {k: np.asarray(npz[k], np.float32) for k in npz.files})
        except (OSError, ValueError, WeightsError) as exc:
            raise RecipeError(f"--init-from {recipe.init_from}: {exc}") from None
    layers, log = run_training(train_samples, val_samples, start_weights, cfg, on_step=on_step,
                               on_eval=on_eval)
    fp16 = {k: v.astype(np.float16) for k, v in layers.items()}
    write_curve(log, recipe.out_dir / "loss_curve.png")
    scored_val = postfit.score(val_samples, weights, cfg.cut, layers)
    drift = max(abs(s.sparse - s.sparse_fp32) for s in scored_val)
    scale = postfit.output_scale(scored_val)
    say(f"output scale fitted on validation: {scale:.3f}")
    scored_val = postfit.scaled(scored_val, scale)
    layers_path = recipe.out_dir / SPARSE_RESOURCE
    write_npz(layers_path, postfit.apply_scale(fp16, scale))
    report: dict[str, Any] = {
        "config": cfg.__dict__, "train_folder": str(recipe.data), "train_images": len(train_images),
        "val_images": [im.name for im in val_images], "flips": recipe.flips,
        "scales": list(recipe.scales), "sigma_px": recipe.sigma,
        "feature_precision": recipe.feature_precision, "feature_seconds": round(extract_s, 1),
        "log": log.as_dict(), "sha256": sha256_file(layers_path),
        "fp16_max_count_drift_val": drift, "output_scale": scale,
        "val": [s.__dict__ for s in scored_val],
    }
    tables = None
    if recipe.calibrate_with is not None:
        a_images = load_train_folder(recipe.calibrate_with)
        a_images = a_images[::max(len(a_images) // recipe.calibrate_images, 1)][:recipe.calibrate_images]
        with progress("caching calibration features", len(a_images)) as advance:
            a_samples = features(a_images, on_progress=advance)
        scored_a = postfit.scaled(postfit.score(a_samples, weights, cfg.cut, layers), scale)
        threshold, rel = postfit.best_threshold(scored_val + scored_a)
        # The sparse model's intervals also see the validation images shrunk as in training
        # (smaller people, the CCTV case) and the dense A images it was not trained on.
        resized = tuple(v for v in recipe.scales if v != 1.0)
        scored_resized = postfit.scaled(postfit.score(features(val_images, scales=resized), weights, cfg.cut,
                                                      layers), scale) if resized else []
        tables = postfit.tables(scored_val, scored_a, k=scale, extra_sparse=scored_resized)
        save_tables(tables, recipe.out_dir / "intervals.json")
        report.update({"calibration_resized_val": [s.__dict__ for s in scored_resized],
                       "calibration_folder": str(recipe.calibrate_with),
                       "calibration": [s.__dict__ for s in scored_a],
                       "auto_threshold_per_mpx": threshold, "auto_mean_rel_error_train": rel})
        say(f"auto threshold: {threshold:.1f} people/MP (mean rel. error {rel:.3f} on TRAIN images)")
    (recipe.out_dir / "train_report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    best = (f"best validation MAE {log.best_mae:.2f} at step {log.best_step} ({log.best_kind} weights); "
            f"fp16 count drift {drift:.4f}; {time.perf_counter() - started:.0f} s in all")
    return RecipeResult(layers_path, report, tables, best)
