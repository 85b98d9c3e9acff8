"""The precision a command runs when none is asked for: the fastest one validated against fp32.

int8 where every model the command may run ships an int8 calibration table whose measured count
drift against fp32 is within ``INT8_DRIFT_LIMIT_PCT``; else bf16 where the CPU runs it natively
(AVX-512-BF16 or AMX); else fp32. ``demo`` has always run int8, so the production commands
default to what the demo shows, and the reason is printed in each start banner.

The drift figures are those measured by ``crowdsafe bench --drift-images 0`` over all 140 dev
images (docs/results/speed.md), kept here with the result file they come from; a table replaced
by ``crowdsafe models calibrate`` must be measured again before its figure is changed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crowdsafe.counting.engines import EngineUnavailable, Precision, cpu_has_bf16, load_int8_plan
from crowdsafe.counting.variants import MODELS, ModelName

#: Largest aggregate count drift of int8 against fp32 (same model and engine) taken as "the same
#: counts": an order of magnitude below the counting error of either model on its own images.
INT8_DRIFT_LIMIT_PCT = 1.0


@dataclass(frozen=True)
class Int8Validation:
    drift_pct: float  # |sum int8 - sum fp32| / sum fp32 over the images, OpenVINO
    images: int
    result: str  # benchmarks/results file holding the run


#: Measured int8 drift of each shipped table (``crowdsafe bench ... --drift-images 0``).
INT8_VALIDATED: dict[ModelName, Int8Validation] = {
    "dense": Int8Validation(0.11, 140, "benchmarks/results/bench-720p-alldev-2026-12-01.json"),
    "sparse": Int8Validation(0.07, 140, "benchmarks/results/bench-sparse-int8-alldev-2026-12-05.json"),
}


def int8_problem(model: ModelName) -> str | None:
    """Why ``model`` should not run int8 by default, or None when its table is shipped and validated."""
    try:
        load_int8_plan(model)
    except EngineUnavailable as exc:
        return str(exc)
    checked = INT8_VALIDATED.get(model)
    if checked is None:
        return f"the {model} model's int8 table has no measured drift against fp32"
    if checked.drift_pct > INT8_DRIFT_LIMIT_PCT:
        return (f"the {model} model's int8 drift against fp32 is {checked.drift_pct:.2f} %, above the "
                f"{INT8_DRIFT_LIMIT_PCT:g} % limit")
    return None


def default_precision(models: Iterable[ModelName] = MODELS) -> tuple[Precision, str]:
    """(precision, why) for commands given no ``--precision``: int8, else bf16, else fp32."""
    wanted = list(dict.fromkeys(models))
    problems = [p for m in wanted if (p := int8_problem(m)) is not None]
    if not problems:
        drift = ", ".join(f"{m} {v.drift_pct:.2f} % over {v.images} dev images"
                          for m in wanted if (v := INT8_VALIDATED[m]))
        return "int8", (f"int8 by default: each model's shipped int8 table counts within "
                        f"{INT8_DRIFT_LIMIT_PCT:g} % of fp32 ({drift})")
    if cpu_has_bf16():
        return "bf16", f"bf16 by default (native on this CPU): not int8, since {'; '.join(problems)}"
    return "fp32", f"fp32 by default: not int8, since {'; '.join(problems)}; the CPU has no native bf16"
