"""``crowdsafe train``: fine-tune the sparse-scene model on TRAIN images (needs crowdsafe[train]).

Reproduces the shipped ``sparse`` model: the same seeds, split, crops and schedule give the
same layers (up to thread-order rounding). torch is imported only inside this command.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import err_console, fail, user_errors
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.variants import SPARSE_RESOURCE
from crowdsafe.counting.weights import sha256_file
from crowdsafe.training.data import SIGMA_PX

#: Where the shipped files live in a source checkout (``--install`` writes them there).
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "counting"


def _say(text: str) -> None:
    err_console.print(text, highlight=False, markup=False)


def _refuse_eval_sets(paths: list[Path]) -> None:
    for path in paths:
        if path.resolve().parent.name == "crowd":
            raise fail(f"{path} is an evaluation set (shared/data/crowd); train and calibrate on "
                       "TRAIN folders only (shared/data/crowd-train)")


def train(
    data: Annotated[Path, typer.Argument(
        help="TRAIN folder with labels.json and head points (ShanghaiTech B train).",
        exists=True, file_okay=False, show_default=False)],
    out_dir: Annotated[Path, typer.Option(help="Where the layers, loss curve and report go.")
                       ] = Path("train-out"),
    steps: Annotated[int, typer.Option(min=0, help="Optimiser steps (0: only the post-fit of "
                                       "--init-from's layers: scale, intervals, threshold).")
                     ] = 5000,
    init_from: Annotated[Path | None, typer.Option(
        help="Start from these layers (a sparse_b.npz written by an earlier run) instead of the "
             "published weights.", exists=True, dir_okay=False, show_default=False)] = None,
    batch: Annotated[int, typer.Option(min=1, help="Crops per step.")] = 4,
    crop: Annotated[int, typer.Option(min=0, help="Crop side in output cells (8 px each); 0 = "
                                      "whole images.")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate (cosine decay).")] = 2e-5,
    warmup: Annotated[int, typer.Option(min=0, help="Linear warm-up steps.")] = 50,
    cut: Annotated[str, typer.Option(help="Last frozen conv; the layers after it are trained.")
                   ] = "backend.2",
    train_from: Annotated[str | None, typer.Option(
        help="First conv after --cut to train; the ones between run frozen (default: all).",
        show_default=False)] = None,
    val: Annotated[int, typer.Option(min=1, help="TRAIN images held out for validation.")] = 40,
    limit: Annotated[int | None, typer.Option(min=2, help="Use only the first N images (smoke "
                                              "tests).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of split, crops and initialisation.")] = 0,
    flips: Annotated[bool, typer.Option(help="Also train on mirrored images (real forward "
                                        "passes, cached).")] = False,
    scales: Annotated[str, typer.Option(help="Comma-separated image scales to train on besides "
                                        "mirrors, e.g. 1,0.7,0.5 (smaller people; cached).")
                      ] = "1",
    sigma: Annotated[float, typer.Option(min=1.0, max=64.0, help="Gaussian kernel of the density "
                                         "targets, input pixels.")] = SIGMA_PX,
    count_weight: Annotated[float, typer.Option(min=0.0, help="Weight of an L1 term on each "
                                                "crop's count beside the pixel-wise loss.")] = 0.0,
    output_lr_factor: Annotated[float, typer.Option(min=0.0, help="Output conv's learning rate "
                                                    "relative to the backend's.")] = 1.0,
    ema: Annotated[float, typer.Option(min=0.0, max=0.9999, help="Weight moving-average decay "
                                       "(0 = off); raw and average are validated, the better kept.")
                 ] = 0.998,
    eval_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 500,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for training (AMX/AVX-512-BF16 CPUs).")
                    ] = True,
    feature_precision: Annotated[str, typer.Option(help="Engine precision of the cached "
                                                   "features: fp32 or bf16.")] = "fp32",
    calibrate_with: Annotated[Path | None, typer.Option(
        help="Dense-scene TRAIN folder (ShanghaiTech A train) for the auto threshold and the "
             "dense model's interval table.", exists=True, file_okay=False, show_default=False)
    ] = None,
    calibrate_images: Annotated[int, typer.Option(min=2, help="Images used from --calibrate-with."
                                                  )] = 40,
    install: Annotated[bool, typer.Option(help="Copy the layers and interval tables into the "
                                          "source checkout's package (then set SPARSE_SHA256).")
                       ] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.", show_default=False)
                       ] = None,
) -> None:
    """Fine-tune CSRNet's backend for sparse street scenes; write layers (fp16), curve, report."""
    if importlib.util.find_spec("torch") is None:
        raise fail("crowdsafe train needs torch: pip install 'crowdsafe[train]'")
    if feature_precision not in ("fp32", "bf16"):
        raise fail(f"--feature-precision {feature_precision}: expected fp32 or bf16")
    _refuse_eval_sets([data] + ([calibrate_with] if calibrate_with else []))
    import numpy as np

    from crowdsafe.counting.intervals import save_tables
    from crowdsafe.counting.variants import merge_layers
    from crowdsafe.counting.weights import WeightsError, load_weights
    from crowdsafe.training import postfit
    from crowdsafe.training.curve import write_curve
    from crowdsafe.training.data import TrainDataError, load_train_folder, split
    from crowdsafe.training.export import write_npz
    from crowdsafe.training.features import cache_features
    from crowdsafe.training.loop import TrainConfig, trained_specs
    from crowdsafe.training.loop import train as run_training

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"--out-dir {out_dir}: {exc.strerror or exc}") from None
    if 0 < crop < 4:
        raise fail(f"--crop {crop}: use 0 (whole images) or at least 4 cells")
    try:
        train_scales = tuple(sorted({float(v) for v in scales.split(",") if v.strip()}, reverse=True))
    except ValueError:
        raise fail(f"--scales {scales!r}: expected numbers like 1,0.7,0.5") from None
    if not train_scales or any(not 0.2 <= v <= 2.0 for v in train_scales):
        raise fail(f"--scales {scales!r}: each scale must be between 0.2 and 2")
    cfg = TrainConfig(cut=cut, steps=steps, batch=batch, crop=crop, lr=lr, warmup=warmup,
                      eval_every=eval_every,
                      seed=seed, bf16=bf16, threads=threads, ema=ema,
                      count_weight=count_weight, train_from=train_from,
                      output_lr_factor=output_lr_factor)
    started = time.perf_counter()
    with user_errors():
        try:
            names = [spec.name for spec in trained_specs(cut)]
            if train_from is not None and train_from not in names:
                raise fail(f"--train-from {train_from}: expected a conv after --cut {cut} "
                           f"({', '.join(names)})")
            images = load_train_folder(data)[:limit]
            train_images, val_images = split(images, min(val, len(images) - 1), seed)
        except TrainDataError as exc:
            raise fail(str(exc)) from None
        weights = load_weights()
        with progress_bar("caching features", len(images)) as advance:
            train_samples = cache_features(train_images, cut, feature_precision, flips=flips,
                                           scales=train_scales, sigma=sigma, threads=threads,
                                           on_progress=advance)
            val_samples = cache_features(val_images, cut, feature_precision, sigma=sigma,
                                         threads=threads,
                                         on_progress=advance)
        extract_s = time.perf_counter() - started
        _say(f"features: {len(train_samples)} train samples ({len(train_images)} images"
             f"{', mirrored too' if flips else ''}, scales {','.join(f'{v:g}' for v in train_scales)}), "
             f"{len(val_samples)} validation, {extract_s:.0f} s")

        def on_step(step: int, loss: float) -> None:
            if step % 50 == 0 or step == steps:
                _say(f"step {step}/{steps} loss {loss:.4f} ({time.perf_counter() - started:.0f} s)")

        def on_eval(step: int, mae: float, bias: float, kind: str) -> None:
            _say(f"validation at step {step} ({kind} weights): MAE {mae:.2f}, bias {bias:+.2f} "
                 f"({time.perf_counter() - started:.0f} s)")

        start_weights = weights
        if init_from is not None:
            try:
                with np.load(init_from, allow_pickle=False) as npz:
                    start_weights = merge_layers(weights, {k: np.asarray(npz[k], np.float32)
                                                           for k in npz.files})
            except (OSError, ValueError, WeightsError) as exc:
                raise fail(f"--init-from {init_from}: {exc}") from None
        layers, log = run_training(train_samples, val_samples, start_weights, cfg,
                                   on_step=on_step, on_eval=on_eval)
        fp16 = {k: v.astype(np.float16) for k, v in layers.items()}
        write_curve(log, out_dir / "loss_curve.png")
        scored_val = postfit.score(val_samples, weights, cut, layers)
        drift = max(abs(s.sparse - s.sparse_fp32) for s in scored_val)
        scale = postfit.output_scale(scored_val)
        _say(f"output scale fitted on validation: {scale:.3f}")
        scored_val = postfit.scaled(scored_val, scale)
        layers_path = out_dir / SPARSE_RESOURCE
        write_npz(layers_path, postfit.apply_scale(fp16, scale))
        report: dict[str, object] = {
            "config": cfg.__dict__, "train_folder": str(data), "train_images": len(train_images),
            "val_images": [im.name for im in val_images], "flips": flips,
            "scales": list(train_scales), "sigma_px": sigma,
            "feature_precision": feature_precision, "feature_seconds": round(extract_s, 1),
            "log": log.as_dict(), "sha256": sha256_file(layers_path),
            "fp16_max_count_drift_val": drift, "output_scale": scale,
            "val": [s.__dict__ for s in scored_val],
        }
        tables = None
        if calibrate_with is not None:
            a_images = load_train_folder(calibrate_with)
            stride = max(len(a_images) // calibrate_images, 1)
            a_images = a_images[::stride][:calibrate_images]
            with progress_bar("caching calibration features", len(a_images)) as advance:
                a_samples = cache_features(a_images, cut, feature_precision, sigma=sigma,
                                           threads=threads,
                                           on_progress=advance)
            scored_a = postfit.scaled(postfit.score(a_samples, weights, cut, layers), scale)
            threshold, rel = postfit.best_threshold(scored_val + scored_a)
            # The sparse model's intervals also see the validation images shrunk as in training
            # (smaller people, the CCTV case) and the dense A images it was not trained on.
            resized = tuple(v for v in train_scales if v != 1.0)
            scored_resized = postfit.scaled(postfit.score(cache_features(
                val_images, cut, feature_precision, scales=resized, sigma=sigma, threads=threads),
                weights, cut, layers), scale) if resized else []
            tables = postfit.tables(scored_val, scored_a, k=scale, extra_sparse=scored_resized)
            report["calibration_resized_val"] = [s.__dict__ for s in scored_resized]
            save_tables(tables, out_dir / "intervals.json")
            report["calibration_folder"] = str(calibrate_with)
            report["calibration"] = [s.__dict__ for s in scored_a]
            report["auto_threshold_per_mpx"] = threshold
            report["auto_mean_rel_error_train"] = rel
            _say(f"auto threshold: {threshold:.1f} people/MP (mean rel. error {rel:.3f} on TRAIN "
                 "images)")
        (out_dir / "train_report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    _say(f"best validation MAE {log.best_mae:.2f} at step {log.best_step} ({log.best_kind} "
         f"weights); fp16 count drift "
         f"{drift:.4f}; {time.perf_counter() - started:.0f} s in all")
    _say(f"wrote {layers_path} (sha256 {report['sha256']}), loss_curve.png, train_report.json")
    if install:
        (PACKAGE_DIR / SPARSE_RESOURCE).write_bytes(layers_path.read_bytes())
        if tables is not None:
            save_tables(tables, PACKAGE_DIR / "intervals.json")
        _say(f"installed into {PACKAGE_DIR}; set SPARSE_SHA256 = \"{report['sha256']}\" in "
             "crowdsafe/counting/variants.py")
