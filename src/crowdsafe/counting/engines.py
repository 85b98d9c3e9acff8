"""Inference engines behind one small interface: OpenVINO and ONNX Runtime.

OpenVINO is the fastest CPU engine we measured; ONNX Runtime is the portable fallback and
the GPU path (CUDA execution provider when present). Precision is always explicit: OpenVINO
would otherwise silently run bf16 on CPUs with AVX-512-BF16/AMX, changing counts without
telling anyone, so every engine reports the precision it actually runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from crowdsafe.counting.finetuned import LayersRef, base_of, finetuned_weights, is_finetuned, verify_layers
from crowdsafe.counting.graph import INPUT_NAME, Int8Plan, build_model
from crowdsafe.counting.variants import ModelName, model_tag, model_weights, sparse_path, verify_sparse
from crowdsafe.counting.weights import (
    NPZ_SHA256,
    cache_dir,
    sha256_file,
    verify,
    weights_path,
)

EngineName = Literal["openvino", "onnxruntime"]
Precision = Literal["fp32", "bf16", "int8"]
ENGINES: tuple[EngineName, ...] = ("openvino", "onnxruntime")
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "int8")
#: ``auto``: the engine measured fastest per precision by ``crowdsafe bench`` on an AVX-512/AMX
#: Xeon (docs/results/speed.md): ONNX Runtime's fp32 convolutions beat OpenVINO's (2.9 vs 4.1 s per 720p
#: frame), OpenVINO's int8 (u8 on VNNI/AMX) beats ONNX Runtime's, and only OpenVINO has bf16.
AUTO_ORDER: dict[Precision, tuple[EngineName, ...]] = {
    "fp32": ("onnxruntime", "openvino"), "bf16": ("openvino", "onnxruntime"),
    "int8": ("openvino", "onnxruntime")}
INT8_PLAN_RESOURCE = "int8_plan.json"
#: One activation table per model: the sparse model's fine-tuned layers see other activations
#: than the dense ones, so the dense scales would clip or waste its int8 range.
INT8_PLAN_RESOURCES: dict[ModelName, str] = {"dense": INT8_PLAN_RESOURCE,
                                              "sparse": "int8_plan_sparse.json"}


class EngineUnavailable(RuntimeError):
    """This engine/precision cannot run here; the message says why and what to use."""


class Engine(Protocol):
    """Runs the density network on a batch: (N,3,H,W) float32 RGB 0..255 -> (N,1,H/8,W/8)."""

    name: EngineName
    precision: Precision
    device: str

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EngineSpec:
    engine: EngineName | Literal["auto"] = "auto"
    precision: Precision = "fp32"
    threads: int | None = None
    device: str = "auto"
    #: ``dense`` or ``sparse`` (see counting.variants); ``auto`` is decided above the engine.
    model: ModelName = "dense"
    #: A camera's fine-tuned last layers on top of ``model`` (counting.finetuned), or None.
    layers: LayersRef | None = None


def spec_for(key: str, spec: EngineSpec, refs: Iterable[LayersRef] = ()) -> EngineSpec:
    """The engine spec that runs model ``key``: a shipped model, or one of ``refs``' layers."""
    if not is_finetuned(key):
        return replace(spec, model=base_of(key), layers=None)
    for ref in refs:
        if ref.key == key:
            return replace(spec, model=ref.base, layers=ref)
    raise ValueError(f"model {key!r}: no fine-tuned layers of that name were given")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def load_int8_plan(model: ModelName = "dense") -> Int8Plan:
    """The shipped activation-scale table for int8 of ``model`` (calibrated on ShanghaiTech train images)."""
    resource = INT8_PLAN_RESOURCES.get(model)
    if resource is None:
        raise EngineUnavailable(f"no int8 calibration table is defined for the {model} model")
    try:
        text = resources.files("crowdsafe.counting").joinpath(resource).read_text()
    except FileNotFoundError as exc:
        hint = "" if model == "dense" else f" --model {model}"
        raise EngineUnavailable(
            f"int8 calibration table for the {model} model ({resource}) is missing from this "
            f"install; reinstall crowdsafe or run `crowdsafe models calibrate{hint}` from a "
            "source checkout"
        ) from exc
    data = json.loads(text)
    return Int8Plan(activation_scales={k: float(v) for k, v in data["activation_scales"].items()},
                    keep_float=frozenset(data.get("keep_float", [])))


def camera_int8_plan(plan: Int8Plan, layers: LayersRef | None) -> Int8Plan:
    """``plan`` with the fine-tuned convs' input scales calibrated on the camera's own frames."""
    if layers is None or not layers.activation_scales:
        return plan
    return Int8Plan({**plan.activation_scales, **dict(layers.activation_scales)}, plan.keep_float)


def model_path(precision: Precision, plan: Int8Plan | None = None,
               model: ModelName = "dense", layers: LayersRef | None = None) -> Path:
    """Build (once) and cache the ONNX file for a precision and model; later runs start fast."""
    if precision == "int8":
        plan = camera_int8_plan(plan or load_int8_plan(model), layers)
        key = json.dumps({"s": plan.activation_scales, "k": sorted(plan.keep_float)}, sort_keys=True)
        tag = "int8-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    else:
        plan, tag = None, "fp32"
    if model != "dense":
        tag = f"{model_tag(model)}-{tag}"
    if layers is not None:
        tag = f"{tag}-camera-{layers.sha256[:16]}"
    path = cache_dir() / "models" / f"csrnet-{NPZ_SHA256[:12]}-{tag}.onnx"
    digest_file = path.with_suffix(".onnx.sha256")
    verify(weights_path())  # the source of every graph is checked on every start (~0.2 s)
    if model != "dense":
        verify_sparse(sparse_path())
    if layers is not None:
        verify_layers(layers)
    if path.is_file() and digest_file.is_file() and sha256_file(path) == digest_file.read_text():
        return path
    # Missing, half-written or corrupted cache entry: rebuild it from the verified weights.
    import onnx

    weights = model_weights(model)
    if layers is not None:
        weights = finetuned_weights(weights, layers)
    data = build_model(weights, int8=plan).SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    digest_file.write_text(hashlib.sha256(data).hexdigest())
    onnx.checker.check_model(str(path))
    return path


class OpenVinoEngine:
    """OpenVINO CPU engine; one compiled model per input shape (static shapes run fastest)."""

    name: EngineName = "openvino"

    def __init__(self, precision: Precision = "fp32", threads: int | None = None,
                 shapes_cached: int = 12, model: ModelName = "dense",
                 layers: LayersRef | None = None) -> None:
        if importlib.util.find_spec("openvino") is None:
            raise EngineUnavailable("OpenVINO is not installed: pip install openvino")
        import openvino as ov

        if precision == "bf16" and not cpu_has_bf16():
            raise EngineUnavailable(
                "bf16 needs a CPU with AVX-512-BF16 or AMX; this CPU has neither, so bf16 would "
                "be emulated or silently fall back. Use fp32 or int8.")
        self.precision = precision
        self.device = "CPU"
        self._core = ov.Core()
        self.model = model
        self.layers = layers
        self._model = self._core.read_model(str(model_path(precision, model=model, layers=layers)))
        hint = "bf16" if precision == "bf16" else "f32"
        self._config: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint,
                                           "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._shapes_cached = shapes_cached

    def _compiled_for(self, shape: tuple[int, ...]):  # noqa: ANN202 - openvino type
        compiled = self._compiled.get(shape)
        if compiled is None:
            model = self._model.clone()
            model.reshape({INPUT_NAME: list(shape)})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._compiled[shape] = compiled
            while len(self._compiled) > self._shapes_cached:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(shape)
        return compiled

    @property
    def compiled_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Input shapes with a compiled model held, oldest first.

        Each one is a whole compiled network in native memory (~116 MB for a 640x480 input,
        benchmarks/shape_rss.py), which tracemalloc cannot see; a long run's RSS is bounded
        only because this cache is (``shapes_cached``).
        """
        return tuple(self._compiled)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        compiled = self._compiled_for(tuple(batch.shape))
        return np.asarray(compiled({INPUT_NAME: batch})[0])

    def actual_precision(self) -> str:
        """What OpenVINO really runs, read back from the compiled model."""
        if not self._compiled:
            return self.precision
        compiled = next(iter(self._compiled.values()))
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        name = value.to_string() if hasattr(value, "to_string") else str(value)
        return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)


class OnnxRuntimeEngine:
    """ONNX Runtime engine: CPU everywhere, CUDA execution provider when installed."""

    name: EngineName = "onnxruntime"

    def __init__(self, precision: Precision = "fp32", threads: int | None = None,
                 device: str = "auto", model: ModelName = "dense",
                 layers: LayersRef | None = None) -> None:
        import onnxruntime as ort

        if precision == "bf16":
            raise EngineUnavailable("ONNX Runtime has no bf16 convolution on CPU; use fp32 or int8")
        self.precision = precision
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise EngineUnavailable("CUDA requested but onnxruntime-gpu is not installed "
                                    f"(providers: {available})")
        use_cuda = device in ("cuda", "auto") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.model = model
        self.layers = layers
        self._session = ort.InferenceSession(str(model_path(precision, model=model, layers=layers)), opts,
                                             providers=providers)
        self.device = "CUDA" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "CPU"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {INPUT_NAME: batch})[0])


def create_engine(spec: EngineSpec | None = None) -> Engine:
    """The requested engine, or with ``auto`` the fastest available one for the precision."""
    spec = spec or EngineSpec()
    if spec.engine == "onnxruntime" or (spec.engine == "auto" and spec.device == "cuda"):
        return OnnxRuntimeEngine(spec.precision, spec.threads, spec.device, model=spec.model,
                                 layers=spec.layers)
    if spec.engine == "openvino":
        return OpenVinoEngine(spec.precision, spec.threads, model=spec.model, layers=spec.layers)
    errors: list[str] = []
    for name in AUTO_ORDER[spec.precision]:
        try:
            if name == "openvino":
                return OpenVinoEngine(spec.precision, spec.threads, model=spec.model, layers=spec.layers)
            return OnnxRuntimeEngine(spec.precision, spec.threads, spec.device, model=spec.model,
                                     layers=spec.layers)
        except EngineUnavailable as exc:
            errors.append(f"{name}: {exc}")
    raise EngineUnavailable("; ".join(errors))
