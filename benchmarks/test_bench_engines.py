"""pytest-benchmark timings of one small inference per engine x precision.

Skipped in the normal test run (``--benchmark-skip`` in pyproject); run with
``pytest benchmarks --benchmark-only``. 320x240 keeps a round to seconds on 2 cores while
still exercising every layer; ``crowdsafe bench`` is the tool for real frame sizes.
"""

from __future__ import annotations

import pytest

from crowdsafe.bench.frames import frame_batch
from crowdsafe.counting.engines import (
    ENGINES,
    EngineSpec,
    EngineUnavailable,
    create_engine,
)
from crowdsafe.counting.weights import WeightsError


@pytest.fixture(scope="module")
def batch():
    return frame_batch(320, 240)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("engine_name", ENGINES)
def test_infer_320x240(benchmark, batch, engine_name, precision):
    try:
        engine = create_engine(EngineSpec(engine_name, precision))
    except (EngineUnavailable, WeightsError) as exc:
        pytest.skip(f"{engine_name} {precision} unavailable: {exc}")
    engine.infer(batch)  # compile and warm caches outside the timing
    benchmark.extra_info.update(engine=engine_name, precision=precision, size="320x240")
    density = benchmark.pedantic(engine.infer, args=(batch,), rounds=5, iterations=1)
    assert density.shape == (1, 1, 30, 40)
