"""A model replica: one engine in one Ray actor, counting frames sent by the driver.

CPU replicas are per-core: one engine with one thread per reserved CPU, one frame at a time
(several single-threaded engines beat one engine spread over the same cores, since a frame's
layers no longer wait for each other's threads). A GPU replica owns one GPU and batches the
frames of many cameras (``batching.DynamicBatcher``); it is created as a threaded actor so
concurrent requests reach the batcher together.

The class is plain Python; ``runner`` wraps it with ``ray.remote`` and restart options. It
keeps no state between frames, so a restarted replica is as good as the one that died.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from crowdsafe.counting.choice import AutoCounter
from crowdsafe.counting.counter import Counts, DensityCounter, DensityResult
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.finetuned import LayersRef
from crowdsafe.counting.region import Box, RegionCounter
from crowdsafe.runtime.counters import precision_for
from crowdsafe.runtime.ray.batching import DynamicBatcher
from crowdsafe.runtime.ray.gpu import Device, GpuPrecision, replica_engine
from crowdsafe.runtime.ray.wire import WireSample, decode_image, node_id


@dataclass(frozen=True)
class ReplicaSpec:
    cpu: EngineSpec
    device: Device = "cpu"
    gpu_precision: GpuPrecision = "fp16"
    max_batch: int = 1
    max_wait_s: float = 0.01
    #: The counting models the site's cameras use; a replica holds one engine for each, so any
    #: replica can count any camera (and a restarted one is as good as the one that died).
    #: A camera's fine-tuned model is named by its key (``counting.finetuned``), its layers in
    #: ``layers`` (a path each replica reads and verifies: on a multi-node cluster, a path that
    #: every node sees).
    models: tuple[str, ...] = ("dense",)
    layers: tuple[LayersRef, ...] = ()


@dataclass(frozen=True)
class ReplicaInfo:
    pid: int
    node_id: str
    engine: str
    device: str
    precision: str
    max_batch: int
    fallback: str


@dataclass(frozen=True)
class Counted:
    """A frame's density map (1/8 resolution) and what it cost inside the replica."""

    camera_id: str
    ts: float
    density: np.ndarray
    height: int
    width: int
    decode_s: float
    infer_s: float
    batch: int


class _Batched:
    """One call's view of a batcher as a plain counter (what ``RegionCounter`` wraps), keeping the
    size of the batch the frame ran in; one per call, since replicas count concurrently."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self.batcher = batcher
        self.batch = 1

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        result, self.batch = self.batcher.count(image_bgr)
        return result


class CountReplica:
    def __init__(self, spec: ReplicaSpec) -> None:
        if not spec.models:
            raise ValueError("a replica needs at least one model")
        self.spec = spec
        self.counters: dict[str, DensityCounter] = {}
        self.batchers: dict[str, DynamicBatcher] = {}
        notes = []
        for model in spec.models:
            chosen = replica_engine(spec.device, precision_for(model, spec.cpu, spec.layers),
                                    spec.gpu_precision)
            self.counters[model] = DensityCounter(chosen.engine)
            if chosen.fallback:
                notes.append(chosen.fallback)
            if spec.max_batch > 1:
                self.batchers[model] = DynamicBatcher(self.counters[model], max_batch=spec.max_batch,
                                                      max_wait_s=spec.max_wait_s)
        self.counter = self.counters[spec.models[0]]
        self.fallback = "; ".join(dict.fromkeys(notes))
        self.batcher = self.batchers.get(spec.models[0])

    def _counter_for(self, model: str) -> DensityCounter | AutoCounter:
        if model == "auto":  # no calibration to decide from: the per-frame scene test
            return AutoCounter(lambda: self._counter_for("sparse"),  # type: ignore[arg-type, return-value]
                               lambda: self._counter_for("dense"))  # type: ignore[arg-type, return-value]
        if model not in self.counters:
            raise ValueError(f"this replica has no {model!r} model (it has {', '.join(self.counters)})")
        return self.counters[model]

    def info(self) -> ReplicaInfo:
        engine = self.counter.engine
        return ReplicaInfo(os.getpid(), node_id(), engine.name, engine.device, str(engine.precision),
                           self.spec.max_batch, self.fallback)

    def count(self, wire: WireSample, model: str = "dense", region: tuple[Box, Box] | None = None) -> Counted:
        """``region``: the camera's (core, crop), inferred as ``CameraCounters`` does in-process."""
        t0 = time.perf_counter()
        image = decode_image(wire.image, wire.encoding)
        t1 = time.perf_counter()
        batcher = self.batchers.get(model)
        inner: Counts = _Batched(batcher) if batcher is not None else self._counter_for(model)
        result = (inner if region is None else RegionCounter(inner, *region)).count(image)
        batch = inner.batch if isinstance(inner, _Batched) else 1
        t2 = time.perf_counter()
        return Counted(wire.camera_id, wire.ts, result.density, result.image_height, result.image_width,
                       t1 - t0, t2 - t1, batch)

    def count_image(self, image: np.ndarray, model: str = "dense",
                    region: tuple[Box, Box] | None = None) -> np.ndarray:
        """A full-size density map for an image the driver holds (the background check's median),
        inferred over the camera's region like its frames, so the two counts compare."""
        counter: Counts = self._counter_for(model)
        return (counter if region is None else RegionCounter(counter, *region)).count(image).density

    def batch_sizes(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for batcher in self.batchers.values():
            for size, n in batcher.stats.sizes.items():
                sizes[size] = sizes.get(size, 0) + n
        return sizes
