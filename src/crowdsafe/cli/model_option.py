"""The ``--model`` option shared by ``count`` and ``eval``: which counting model runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class ModelChoiceOpt(StrEnum):
    dense = "dense"
    sparse = "sparse"
    auto = "auto"


ModelOption = Annotated[ModelChoiceOpt, typer.Option(
    "--model", help="Counting model: dense (CSRNet, ShanghaiTech A: packed crowds), sparse "
                    "(fine-tuned on ShanghaiTech B: street scenes), or auto (sparse, switching "
                    "to dense when the scene test finds a dense crowd; see MODEL_CARD.md).")]
