"""Runs the model x engine x precision x size grid and collects one row per cell.

A cell that cannot run here (bf16 without AVX-512-BF16/AMX, a missing engine) becomes a row
marked unavailable with the engine's own reason, so the report always shows the whole grid
and never silently drops the precision a reader was looking for. Drift is always against the
same model and engine in fp32: the two models count differently by design, so comparing the
sparse model's int8 with the dense model's fp32 would measure the model, not the precision.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from crowdsafe.bench.drift import counts, dataset_images, drift
from crowdsafe.bench.flops import conv_flops
from crowdsafe.bench.frames import frame_batch, video_frame
from crowdsafe.bench.machine import machine_info
from crowdsafe.bench.peak import sgemm_peak_gflops
from crowdsafe.counting.engines import (
    ENGINES,
    PRECISIONS,
    Engine,
    EngineName,
    EngineSpec,
    EngineUnavailable,
    Precision,
    create_engine,
)
from crowdsafe.counting.variants import MODELS, ModelName

SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720), (1920, 1080))
#: Dev-set images are downscaled to this longer side for the drift check (keeps it minutes).
DRIFT_MAX_SIDE = 1024


@dataclass(frozen=True)
class BenchConfig:
    models: Sequence[ModelName] = MODELS
    engines: Sequence[EngineName] = ENGINES
    precisions: Sequence[Precision] = PRECISIONS
    sizes: Sequence[tuple[int, int]] = SIZES
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    drift_data: Path | None = None
    #: Images per dataset folder for drift (evenly spread); None = all of them.
    drift_images: int | None = 5
    drift_max_side: int = DRIFT_MAX_SIDE


@dataclass
class BenchRow:
    engine: str
    precision: str
    width: int
    height: int
    model: str = "dense"
    available: bool = True
    reason: str | None = None
    fps: float | None = None
    seconds_median: float | None = None
    seconds_min: float | None = None
    seconds_max: float | None = None
    repeats: int = 0
    gflops: float | None = None
    pct_of_peak: float | None = None
    drift_pct: float | None = None
    drift: dict[str, object] | None = None
    runtime: dict[str, object] = field(default_factory=dict)


@dataclass
class BenchReport:
    machine: dict[str, object]
    peak_gflops: float
    peak_method: str
    rows: list[BenchRow]

    def as_dict(self) -> dict[str, object]:
        return {"machine": self.machine, "peak_gflops": self.peak_gflops,
                "peak_method": self.peak_method, "rows": [asdict(r) for r in self.rows]}


def time_calls(call: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup`` untimed ones (compile, caches)."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_inference(engine: Engine, batch: np.ndarray, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of ``repeats`` inferences after ``warmup`` untimed ones."""
    return time_calls(lambda: engine.infer(batch), repeats, warmup)


def openvino_exec_precisions(engine: Engine) -> dict[str, int] | None:
    """Convolutions per runtime precision in OpenVINO's executed graph (u8 = real int8).

    The requested precision is only a wish; the executed graph says whether the low-precision
    transformations actually produced int8 kernels.
    """
    compiled = getattr(engine, "_compiled", None)
    if engine.name != "openvino" or not compiled:
        return None
    model = next(iter(compiled.values())).get_runtime_model()
    tally: dict[str, int] = {}
    for op in model.get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            precision = info["runtimePrecision"].astype(str)
            tally[precision] = tally.get(precision, 0) + 1
    return tally


class _DriftCache:
    """fp32 counts per model and engine, computed once and reused for every reduced precision."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.images: dict[str, list[Path]] = {}
        if config.drift_data is not None and config.drift_data.is_dir():
            self.images = dataset_images(config.drift_data, config.drift_images)
        self._fp32: dict[tuple[str, str], dict[str, list[float]]] = {}

    def _counts(self, engine: Engine) -> dict[str, list[float]]:
        return {name: counts(engine, paths, self.config.drift_max_side)
                for name, paths in self.images.items()}

    def measure(self, engine: Engine) -> tuple[float, dict[str, object]] | None:
        if not self.images or engine.precision == "fp32":
            return None
        model: ModelName = getattr(engine, "model", "dense")
        key = (model, engine.name)
        if key not in self._fp32:
            reference = create_engine(EngineSpec(engine.name, "fp32", self.config.threads,
                                                 model=model))
            self._fp32[key] = self._counts(reference)
        ref = self._fp32[key]
        got = self._counts(engine)
        per_dataset = {name: drift(ref[name], got[name]).as_dict() for name in ref}
        total = drift([c for v in ref.values() for c in v], [c for v in got.values() for c in v])
        detail: dict[str, object] = {"overall": total.as_dict(), "datasets": per_dataset,
                                     "max_side": self.config.drift_max_side,
                                     "reference": f"{model} {engine.name} fp32"}
        return total.aggregate_pct, detail


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _: None,
              peak_gflops: float | None = None) -> BenchReport:
    """Measure every model x engine x precision x size; unavailable cells become explained rows."""
    progress("measuring fp32 peak (numpy sgemm on all cores)")
    peak = peak_gflops if peak_gflops is not None else sgemm_peak_gflops()
    frame = video_frame()
    drift_cache = _DriftCache(config)
    rows: list[BenchRow] = []
    for model in config.models:
        for engine_name in config.engines:
            for precision in config.precisions:
                rows += _bench_cell(config, model, engine_name, precision, frame, peak,
                                    drift_cache, progress)
    return BenchReport(machine=machine_info(), peak_gflops=peak,
                       peak_method="best of 5 numpy float32 2048x2048 matmuls, all cores",
                       rows=rows)


def _bench_cell(config: BenchConfig, model: ModelName, engine_name: EngineName,
                precision: Precision, frame: np.ndarray, peak: float, drift_cache: _DriftCache,
                progress: Callable[[str], None]) -> list[BenchRow]:
    """One model x engine x precision: a row per size, all with that engine's drift."""
    label = f"{model} {engine_name} {precision}"
    try:
        engine = create_engine(EngineSpec(engine_name, precision, config.threads, model=model))
    except EngineUnavailable as exc:
        progress(f"{label}: unavailable ({exc})")
        return [BenchRow(engine_name, precision, w, h, model=model, available=False,
                         reason=str(exc)) for w, h in config.sizes]
    rows = []
    for width, height in config.sizes:
        progress(f"{label} {width}x{height}")
        seconds = time_inference(engine, frame_batch(width, height, frame),
                                 config.repeats, config.warmup)
        median = statistics.median(seconds)
        gflops = conv_flops(height, width) / median / 1e9
        row = BenchRow(engine_name, precision, width, height, model=model, fps=1.0 / median,
                       seconds_median=median, seconds_min=min(seconds),
                       seconds_max=max(seconds), repeats=len(seconds), gflops=gflops,
                       pct_of_peak=100.0 * gflops / peak if peak > 0 else None)
        row.runtime["device"] = engine.device
        exec_precisions = openvino_exec_precisions(engine)
        if exec_precisions is not None:
            row.runtime["conv_exec_precisions"] = exec_precisions
        rows.append(row)
    progress(f"{label}: count drift vs {model} fp32")
    measured = drift_cache.measure(engine)
    for row in rows:
        if measured is not None:
            row.drift_pct, row.drift = measured
    return rows
