"""The GPU path of a model replica: ONNX Runtime's CUDA execution provider, fp32 or fp16.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray.gpu``."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from crowdsafe.counting.engines import (
    Engine,
    EngineName,
    EngineSpec,
    EngineUnavailable,
    Precision,
    create_engine,
    model_path,
)
from crowdsafe.counting.finetuned import LayersRef
from crowdsafe.counting.graph import INPUT_NAME, OUTPUT_NAME
from crowdsafe.counting.variants import ModelName
from crowdsafe.counting.weights import sha256_file

log = logging.getLogger(__name__)

GpuPrecision = Literal["fp32", "fp16"]
Device = Literal["auto", "cpu", "cuda"]
CUDA_PROVIDER = "CUDAExecutionProvider"


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network with float16 convolutions; input and output stay float32."""
    graph = model.graph
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    conv_input = first_conv.input[0]
    out_node = next(n for n in graph.node if OUTPUT_NAME in n.output)
    last = out_node.input[0]
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    g = converted.graph
    conv_params = {name for n in g.node if n.op_type == "Conv" for name in n.input[1:]}
    for i, init in enumerate(g.initializer):
        if init.name in conv_params and init.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name))
    half_in, float_out = f"{conv_input}.fp16", f"{last}.fp32"
    nodes = []
    for node in g.node:
        if node.op_type == "Conv" and node.input[0] == conv_input:
            node.input[0] = half_in
        if OUTPUT_NAME in node.output:
            node.input[0] = float_out
            nodes.append(helper.make_node("Cast", [last], [float_out], to=TensorProto.FLOAT))
        nodes.append(node)
        if conv_input in node.output:
            nodes.append(helper.make_node("Cast", [conv_input], [half_in], to=TensorProto.FLOAT16))
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(converted)
    return converted


def fp16_model_path(model: ModelName = "dense", layers: LayersRef | None = None) -> Path:
    """Build (once) and cache the fp16 graph next to the fp32 one it is made from."""
    source = model_path("fp32", model=model, layers=layers)
    path = source.with_name(source.stem.removesuffix("-fp32") + "-fp16.onnx")
    digest_file = path.with_suffix(".onnx.sha256")
    if path.is_file() and digest_file.is_file() and sha256_file(path) == digest_file.read_text():
        return path
    data = to_fp16(onnx.load(str(source))).SerializeToString()
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    digest_file.write_text(hashlib.sha256(data).hexdigest())
    return path


def cuda_available() -> bool:
    import onnxruntime as ort

    return CUDA_PROVIDER in ort.get_available_providers()


class CudaEngine:
    """CSRNet on one GPU through ONNX Runtime's CUDA execution provider."""

    name: EngineName = "onnxruntime"
    device = "CUDA"

    def __init__(self, precision: GpuPrecision = "fp16", device_id: int = 0,
                 model: ModelName = "dense", layers: LayersRef | None = None) -> None:
        import onnxruntime as ort

        if CUDA_PROVIDER not in ort.get_available_providers():
            raise EngineUnavailable("the CUDA execution provider is not available: pip install "
                                    f"onnxruntime-gpu (providers here: {ort.get_available_providers()})")
        path = fp16_model_path(model, layers) if precision == "fp16" else \
            model_path("fp32", model=model, layers=layers)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [(CUDA_PROVIDER, {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"}),
                     "CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(path), opts, providers=providers)
        if self._session.get_providers()[0] != CUDA_PROVIDER:
            raise EngineUnavailable("ONNX Runtime could not place the model on the GPU")
        self.precision: str = precision
        self.model = model

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {INPUT_NAME: batch})[0])


@dataclass(frozen=True)
class ReplicaEngine:
    """The engine a replica got and, if it is not the one asked for, why."""

    engine: Engine
    fallback: str = ""


def replica_engine(device: Device, cpu: EngineSpec, gpu_precision: GpuPrecision = "fp16") -> ReplicaEngine:
    """A CUDA engine when asked for (or ``auto``) and possible, else the CPU engine of ``cpu``.

    ``cpu.model`` says which counting model both run.
    """
    if device in ("cuda", "auto"):
        try:
            return ReplicaEngine(CudaEngine(gpu_precision, model=cpu.model,  # type: ignore[arg-type]
                                            layers=cpu.layers))
        except EngineUnavailable as exc:
            if device == "auto":
                return ReplicaEngine(create_engine(cpu))
            note = f"GPU requested but {exc}; counting on CPU ({cpu.precision}) instead"
            log.warning("%s", note)
            return ReplicaEngine(create_engine(cpu), note)
    return ReplicaEngine(create_engine(cpu))


def cpu_spec(precision: Precision | str, engine: EngineName | Literal["auto"] = "auto",
             threads: int | None = 1) -> EngineSpec:
    """A per-core CPU engine; fp16 (a GPU precision) runs as fp32 on CPU."""
    cpu_precision: Precision = "fp32" if precision == "fp16" else precision  # type: ignore[assignment]
    return EngineSpec(engine=engine, precision=cpu_precision, threads=threads, device="cpu")
