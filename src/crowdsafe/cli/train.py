"""``crowdsafe train``: fine-tune the sparse-scene model on TRAIN images (needs crowdsafe[train]).

Reproduces the shipped ``sparse`` model: the same seeds, split, crops and schedule give the
same layers (up to thread-order rounding). torch is imported only inside this command.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import err_console, fail, user_errors
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.variants import SPARSE_RESOURCE
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
    from crowdsafe.counting.intervals import save_tables
    from crowdsafe.training.data import TrainDataError
    from crowdsafe.training.loop import TrainConfig
    from crowdsafe.training.recipe import Recipe, RecipeError, run_recipe

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
                      eval_every=eval_every, seed=seed, bf16=bf16, threads=threads, ema=ema,
                      count_weight=count_weight, train_from=train_from, output_lr_factor=output_lr_factor)
    recipe = Recipe(data, out_dir, cfg, init_from=init_from, val=val, limit=limit, flips=flips,
                    scales=train_scales, sigma=sigma, feature_precision=feature_precision,
                    calibrate_with=calibrate_with, calibrate_images=calibrate_images)
    with user_errors():
        try:
            result = run_recipe(recipe, say=_say, progress=progress_bar)
        except (RecipeError, TrainDataError) as exc:
            raise fail(str(exc)) from None
    _say(result.best)
    _say(f"wrote {result.layers_path} (sha256 {result.report['sha256']}), loss_curve.png, train_report.json")
    if install:
        (PACKAGE_DIR / SPARSE_RESOURCE).write_bytes(result.layers_path.read_bytes())
        if result.tables is not None:
            save_tables(result.tables, PACKAGE_DIR / "intervals.json")
        _say(f"installed into {PACKAGE_DIR}; set SPARSE_SHA256 = \"{result.report['sha256']}\" in "
             "crowdsafe/counting/variants.py")
