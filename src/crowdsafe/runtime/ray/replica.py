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

from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec
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


class CountReplica:
    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        chosen = replica_engine(spec.device, spec.cpu, spec.gpu_precision)
        self.counter = DensityCounter(chosen.engine)
        self.fallback = chosen.fallback
        self.batcher = (DynamicBatcher(self.counter, max_batch=spec.max_batch, max_wait_s=spec.max_wait_s)
                        if spec.max_batch > 1 else None)

    def info(self) -> ReplicaInfo:
        engine = self.counter.engine
        return ReplicaInfo(os.getpid(), node_id(), engine.name, engine.device, str(engine.precision),
                           self.spec.max_batch, self.fallback)

    def count(self, wire: WireSample) -> Counted:
        t0 = time.perf_counter()
        image = decode_image(wire.image, wire.encoding)
        t1 = time.perf_counter()
        if self.batcher is not None:
            result, batch = self.batcher.count(image)
        else:
            result, batch = self.counter.count(image), 1
        t2 = time.perf_counter()
        return Counted(wire.camera_id, wire.ts, result.density, result.image_height, result.image_width,
                       t1 - t0, t2 - t1, batch)

    def count_image(self, image: np.ndarray) -> np.ndarray:
        """A full density map for an image the driver holds (the background check's median)."""
        return self.counter.count(image).density

    def batch_sizes(self) -> dict[int, int]:
        return dict(self.batcher.stats.sizes) if self.batcher is not None else {}
