"""Engine options shared by every command that runs the network, so they read the same."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from crowdsafe.counting.engines import EngineSpec


class EngineChoice(StrEnum):
    auto = "auto"
    openvino = "openvino"
    onnxruntime = "onnxruntime"


class PrecisionChoice(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


EngineOption = Annotated[EngineChoice, typer.Option(
    help="Inference engine; auto picks the fastest installed one.")]
PrecisionOption = Annotated[PrecisionChoice, typer.Option(
    help="Numeric precision; bf16 needs a CPU with AVX-512-BF16/AMX, int8 the shipped "
         "calibration table.")]
ThreadsOption = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for inference. Default: all cores.", show_default=False)]


def engine_spec(engine: EngineChoice, precision: PrecisionChoice,
                threads: int | None) -> EngineSpec:
    return EngineSpec(engine=engine.value, precision=precision.value, threads=threads)
