"""Options shared by several commands (the engine, the API), so they read the same; and their logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import err_console
from crowdsafe.counting import batch
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.engines import EngineSpec, Precision
from crowdsafe.counting.precision import default_precision

LiveSiteFile = Annotated[Path, typer.Argument(help="Site YAML file (see `crowdsafe site check`).")]
LiveStoreOption = Annotated[str | None, typer.Option(
    help="SQLite file or postgresql:// URL. Default: crowdsafe.sqlite in the state dir.", show_default=False)]
#: The site file and annotated camera of the commands that check or tune one camera on its video.
SiteFileArg = Annotated[Path, typer.Argument(help="Site file (YAML).", exists=True, dir_okay=False,
                                             show_default=False)]
VideoCameraOption = Annotated[str, typer.Option(
    help="Camera id; its source must be the annotated video file.", show_default=False)]


class EngineChoice(StrEnum):
    auto = "auto"
    openvino = "openvino"
    onnxruntime = "onnxruntime"


class PrecisionChoice(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


EngineOption = Annotated[EngineChoice, typer.Option(
    help="Inference engine; auto picks the fastest installed one.")]
PrecisionOption = Annotated[PrecisionChoice, typer.Option(
    help="Numeric precision. auto: what `demo` runs, int8 where each model's shipped int8 table is "
         "validated against fp32, else bf16 where the CPU has it, else fp32 (the start banner says "
         "which and why); bf16 needs a CPU with AVX-512-BF16/AMX.")]
#: Why the accuracy commands (``eval``, ``eval-site``, ``tune``) stay fp32 unless told otherwise.
ACCURACY_FP32 = (
    "fp32 by default for this accuracy command: the accuracy results it reproduces were validated in fp32, "
    "and int8 changed one of them beyond its goal (counting.sh: tune and eval-site on the sample video gave "
    "90 % interval coverage 96 % in int8, goal 85-95 %; 94 % in fp32); --precision auto measures what run "
    "and demo use")
AccuracyPrecisionOption = Annotated[PrecisionChoice | None, typer.Option(
    help="Numeric precision. Default fp32: this command reproduces accuracy results validated in fp32 "
         "(the start banner says why), except a camera with fine-tuned layers, counted in the precision "
         "its tuning was commissioned in; auto: what `demo` and `run` use (int8 where validated).",
    show_default="fp32")]
ThreadsOption = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for inference. Default: all cores.", show_default=False)]


#: Why ``eval --tuning`` and ``eval-site`` count a fine-tuned camera in its commissioning precision.
COMMISSIONED = ("the precision this camera's tuning was commissioned in (`tune --finetune` fitted its "
                "layer on features computed so; counted in another, its count shifts); --precision overrides")


def resolve_precision(precision: PrecisionChoice | None,
                      commissioned: str | None = None) -> tuple[Precision, str]:
    """(precision, why): ``auto`` as ``counting.precision.default_precision`` decides; None (an
    accuracy command's default) the ``commissioned`` precision of the camera's tuning where it
    records one (a layer fitted on int8 features counts with a bias in fp32), else fp32, with
    ``ACCURACY_FP32``; else as asked."""
    if precision is None:
        if commissioned in (PrecisionChoice.fp32, PrecisionChoice.bf16, PrecisionChoice.int8):
            return commissioned, COMMISSIONED  # type: ignore[return-value]
        return "fp32", ACCURACY_FP32
    if precision is PrecisionChoice.auto:
        return default_precision()
    return precision.value, "asked for with --precision"  # type: ignore[return-value]


def engine_spec(engine: EngineChoice, precision: PrecisionChoice | None, threads: int | None, *,
                announce: bool = True, commissioned: str | None = None) -> EngineSpec:
    """The engine spec of the options, the precision resolved (``commissioned``: as in
    ``resolve_precision``); ``announce``: one stderr line saying which precision runs and why (the
    start banner's), so a default never changes counts unseen."""
    value = resolve_precision(precision, commissioned)[0]
    if announce:
        announce_precision(precision, commissioned)
    return EngineSpec(engine=engine.value, precision=value, threads=threads)


def announce_precision(precision: PrecisionChoice | None, commissioned: str | None = None) -> None:
    """The banner's line: which precision runs and why (stderr; stdout stays the command's data)."""
    value, why = resolve_precision(precision, commissioned)
    err_console.print(f"precision {value}: {why}", highlight=False, markup=False, soft_wrap=True)


def counter_factory(ctx: typer.Context) -> Callable[[EngineSpec], Counts]:
    """How the command builds a model's counter: ``batch.make_counter``, unless its caller passed
    another as ``obj={"make_counter": ...}`` (``CliRunner.invoke``: tests reuse one engine)."""
    return (ctx.obj or {}).get("make_counter") or batch.make_counter


CorsOriginOption = Annotated[list[str] | None, typer.Option(
    help="Allow browser calls from this origin (repeatable). Default: none (CORS closed).",
    show_default=False)]
ApiWorkersOption = Annotated[int, typer.Option(
    min=0, max=64, help="API processes beside the counting one (they share the port; the counting "
                        "process keeps its cores and its GIL); 0: the API in threads of the counting one.")]
TrustedProxyOption = Annotated[list[str] | None, typer.Option(
    help="A reverse proxy (IP or CIDR, repeatable) whose X-Forwarded-For names the client, so failed "
         "logins and live streams are counted per client, not per proxy. Default: none.",
    show_default=False)]


def log_to_stderr(level: int = logging.INFO) -> None:
    """Log records with time, level and logger to stderr, unless logging is set up already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
