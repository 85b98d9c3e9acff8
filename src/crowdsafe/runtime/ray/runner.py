"""Counting on a Ray cluster: readers and model replicas as actors, measuring and store in the driver.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray.runner``."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdsafe.counting.counter import DensityResult, validate_image
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.finetuned import base_of, is_finetuned
from crowdsafe.counting.intervals import load_tables
from crowdsafe.counting.variants import MODELS
from crowdsafe.runtime.camera import CameraHealth
from crowdsafe.runtime.core import PreparedSite, RunnerConfig, RunSummary, SiteRunner
from crowdsafe.runtime.counters import finetuned_layers
from crowdsafe.runtime.pipeline import CountedFrame, FrameOutput
from crowdsafe.runtime.ray.cluster import ClusterError, ClusterInfo, disconnect
from crowdsafe.runtime.ray.gpu import Device, GpuPrecision, cpu_spec
from crowdsafe.runtime.ray.reader import ENDED, ReaderActor, ReaderOptions
from crowdsafe.runtime.ray.replica import Counted, CountReplica, ReplicaInfo, ReplicaSpec
from crowdsafe.runtime.ray.wire import Encoding, WireSample, decode_sample
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayConfig:
    """How the site is spread over the cluster; the defaults suit CPU clusters and GPU nodes alike."""

    replicas: int | None = None  # None: one per GPU, else one per CPU left after the readers
    device: Device = "auto"  # auto: GPUs if the cluster has some (and onnxruntime-gpu works), else CPU
    gpu_precision: GpuPrecision = "fp16"
    max_batch: int = 16  # GPU replicas; CPU replicas count one frame at a time unless cpu_max_batch > 1
    cpu_max_batch: int = 1  # > 1: CPU replicas batch like GPU ones (little gain on CPU; tests the path)
    max_wait_s: float = 0.01
    replica_cpus: float = 1.0  # CPUs reserved per CPU replica; its engine runs this many threads
    reader_cpus: float = 0.0  # CPUs reserved per reader (decoding a 720p feed needs ~0.1-0.3)
    # Custom Ray resources a reader needs, e.g. {"edge": 0.01} with `ray start --resources='{"edge": 100}'`
    # on the nodes beside the cameras: readers run there, and move to another such node if one is lost.
    reader_resources: dict[str, float] = field(default_factory=dict)
    replica_resources: dict[str, float] = field(default_factory=dict)
    encoding: Encoding = "jpeg"
    quality: int = 90
    loop: bool = True
    max_restarts: int = -1  # per actor; -1: always restart
    take_timeout_s: float = 1.0
    retry_after_s: float = 0.5  # wait before re-asking a reader whose actor died


@dataclass
class RayStats:
    """What the distribution cost, per frame, beyond the local runner's summary."""

    frames: int = 0
    wire_bytes: int = 0  # frame bytes sent by readers (image + pair), summed
    density_bytes: int = 0
    infer_s: float = 0.0  # inside replicas
    decode_s: float = 0.0
    round_trip_s: float = 0.0  # dispatch -> density back in the driver
    reader_failures: int = 0
    replica_failures: int = 0
    requeued: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    replicas: list[ReplicaInfo] = field(default_factory=list)

    @property
    def bytes_per_frame(self) -> float:
        return self.wire_bytes / self.frames if self.frames else 0.0

    @property
    def overhead_per_frame_s(self) -> float:
        """Driver round trip minus the inference itself: transfer, decode, queueing, scheduling."""
        return (self.round_trip_s - self.infer_s) / self.frames if self.frames else 0.0


@dataclass
class RaySummary(RunSummary):
    ray: RayStats = field(default_factory=RayStats)


@dataclass
class _InFlight:
    camera_id: str
    wire: WireSample
    wire_ref: Any
    replica: int
    sent: float


def _cause(exc: BaseException) -> str:
    """The last line of a remote error's message: the actor's own exception, not Ray's wrapping."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _ray() -> Any:
    import ray

    return ray


class RemoteReader:
    """A reader actor seen through the interface the local runner expects of its readers.

    ``health()`` must not block (the API calls it on every metrics scrape), so it returns the
    snapshot the scheduler refreshes about once a second; ``join`` stores the final one.
    """

    def __init__(self, camera_id: str, handle: Any) -> None:
        self.camera_id = camera_id
        self.handle = handle
        self.ended = False
        self._health = CameraHealth(camera_id, "connecting", 0.0, None, 0, 0, 0, 0, 0, 0, None, "")
        self._stop_ref: Any = None

    def start(self) -> None:
        self.handle.start.remote()  # fire and forget: a failure shows in the next take

    def stop(self) -> None:
        if self._stop_ref is None:
            self._stop_ref = self.handle.stop.remote(1.0)

    def join(self, timeout: float | None = None) -> bool:
        ray = _ray()
        if self._stop_ref is None:
            return True
        ready, _ = ray.wait([self._stop_ref], timeout=timeout)
        if not ready:
            return False
        try:
            self._health = ray.get(self._stop_ref)
        except ray.exceptions.RayError:
            self.set_lost()
        return True

    @property
    def finished(self) -> bool:
        return self.ended

    def health(self) -> CameraHealth:
        return self._health

    def set_health(self, health: CameraHealth) -> None:
        self._health = health

    def set_lost(self) -> None:
        last = self._health
        self._health = CameraHealth(self.camera_id, "restarting", 0.0, last.last_frame_ts, last.frames_read,
                                    last.samples, last.dropped, last.errors + 1, last.reconnects, last.gaps,
                                    last.last_gap_s, "reader actor lost; Ray is restarting it")


class RayCounting:
    """The :class:`~crowdsafe.runtime.core.Counting` strategy of a cluster run (see the design notes)."""

    def __init__(self, prepared: PreparedSite, cpu: EngineSpec, ray_config: RayConfig | None = None) -> None:
        self.prepared = prepared
        self.ray_config = ray_config or RayConfig()
        self.cpu = cpu
        self.stats = RayStats()
        self.errors = 0
        self.slots: LatestSlots[tuple[WireSample, Any]] = LatestSlots()
        self.camera_ids = [c.camera_id for c in prepared.cameras]
        #: Each camera's model (``auto`` resolved from its calibration where it can be), as the
        #: local runner's ``CameraCounters`` would choose it.
        self.models = dict(prepared.plan.models)
        self.layers = finetuned_layers(prepared.plan.tunings)
        self._intervals = load_tables()  # each model's count interval, as ``DensityCounter`` adds it
        #: Each camera's (core, crop) where it infers only part of its frame, as in-process.
        regions = prepared.plan.regions
        self.regions = {cid: regions[cid] for cid in self.camera_ids if cid in regions}
        scaled = [cam.id for cam in prepared.geometry.site.cameras if cam.scale_normalise]
        if scaled:
            log.warning("scale_normalise is not applied on a Ray cluster (cameras %s count at "
                        "native scale)", ", ".join(scaled))
        self.remote: dict[str, RemoteReader] = {}
        self.readers: list[RemoteReader] = []
        self.replicas: list[Any] = []
        self._replica_up: list[bool] = []
        self._replica_load: list[int] = []
        self._capacity = 1
        self._takes: dict[Any, str] = {}
        self._held: dict[str, tuple[WireSample, Any]] = {}  # taken from the slots, camera still busy
        self._busy: set[str] = set()
        self._in_flight: dict[Any, _InFlight] = {}
        self._done: deque[CountedFrame] = deque()  # counts back, waiting for the core's worker
        self._pings: dict[Any, int] = {}
        self._health_refs: dict[Any, str] = {}
        self._next_health = 0.0
        self._retake_at: dict[str, float] = {}
        self._started_actors = False
        self._stop = threading.Event()
        self.cluster: ClusterInfo | None = None  # set by ``launch``: disconnected when the run ends

    # -- actors ----------------------------------------------------------------------------
    @property
    def replica_models(self) -> tuple[str, ...]:
        """The engines every replica loads: each camera's model, both for an unresolved ``auto``;
        a fine-tuned camera's own model (by its key) after the shipped ones."""
        needed: set[str] = set()
        for model in self.models.values():
            needed.update(("sparse", "dense") if model == "auto" else (model,))
        return tuple(m for m in MODELS if m in needed) + tuple(sorted(m for m in needed if is_finetuned(m)))

    def replica_specs(self) -> list[tuple[ReplicaSpec, dict[str, Any]]]:
        """(spec, actor options) of each replica, from the cluster's resources and the config."""
        ray = _ray()
        rc = self.ray_config
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if rc.device != "cpu" and gpus > 0:
            n = rc.replicas or gpus
            spec = ReplicaSpec(cpu_spec(self.cpu.precision, self.cpu.engine, None), "cuda",
                               rc.gpu_precision, rc.max_batch, rc.max_wait_s, self.replica_models,
                               self.layers)
            options = {"num_gpus": 1, "num_cpus": 1, "max_concurrency": 2 * rc.max_batch + 2}
            return [(spec, options)] * n
        if rc.device == "cuda":
            log.warning("the cluster has no GPU; counting on CPU replicas")
        spare = float(resources.get("CPU", 1.0)) - rc.reader_cpus * len(self.camera_ids)
        n = rc.replicas or max(int(spare // rc.replica_cpus), 1)
        threads = max(int(rc.replica_cpus), 1)
        spec = ReplicaSpec(cpu_spec(self.cpu.precision, self.cpu.engine, self.cpu.threads or threads),
                           "cpu", rc.gpu_precision, rc.cpu_max_batch, rc.max_wait_s,
                           self.replica_models, self.layers)
        return [(spec, {"num_cpus": rc.replica_cpus, "max_concurrency": 2 * rc.cpu_max_batch + 2})] * n

    def open(self) -> None:
        """Start the actors, unless ``launch`` already did (to fail before the run starts)."""
        if not self._started_actors:
            self.start_actors()

    def start_actors(self) -> None:
        """Create the replicas and readers and wait until every engine is loaded (ClusterError if not)."""
        ray = _ray()
        rc = self.ray_config
        self._started_actors = True
        specs = self.replica_specs()
        self._capacity = specs[0][0].max_batch * 2 if specs[0][0].max_batch > 1 else 1
        remote_replica = ray.remote(CountReplica)
        for spec, options in specs:
            self.replicas.append(remote_replica.options(max_restarts=rc.max_restarts, max_task_retries=0,
                                                        resources=dict(rc.replica_resources),
                                                        **options).remote(spec))
        self._replica_up = [True] * len(self.replicas)
        self._replica_load = [0] * len(self.replicas)
        with_lines = self.prepared.plan.line_cameras
        remote_reader = ray.remote(ReaderActor)
        for index, cam in enumerate(self.prepared.cameras):
            size = self.prepared.geometry.cameras[cam.camera_id].ground_map.image_size
            options = ReaderOptions(rc.encoding, rc.quality, (int(size[0]), int(size[1])),
                                    cam.camera_id in with_lines, rc.loop)
            handle = remote_reader.options(num_cpus=rc.reader_cpus, max_concurrency=4,
                                           resources=dict(rc.reader_resources), max_restarts=rc.max_restarts,
                                           max_task_retries=0).remote(self.prepared.site, index, options)
            self.remote[cam.camera_id] = RemoteReader(cam.camera_id, handle)
        self.readers = list(self.remote.values())
        # Engines take seconds to start; wait for them so the run's clock starts with the model ready.
        try:
            self.stats.replicas = ray.get([r.info.remote() for r in self.replicas])
            ray.get([r.handle.info.remote() for r in self.remote.values()])
        except ray.exceptions.RayError as exc:
            self._kill_actors()
            raise ClusterError(f"the site's actors could not start: {_cause(exc)}") from None
        for info in self.stats.replicas:
            if info.fallback:
                log.warning("replica %d: %s", info.pid, info.fallback)

    def _kill_actors(self) -> None:
        ray = _ray()
        if self._capacity > 1 and self.replicas:  # batching replicas: how full their batches were
            done, _ = ray.wait([r.batch_sizes.remote() for r in self.replicas],
                               num_returns=len(self.replicas), timeout=2.0)
            sizes: dict[int, int] = {}
            for ref in done:
                try:
                    for k, v in ray.get(ref).items():
                        sizes[k] = sizes.get(k, 0) + v
                except ray.exceptions.RayError:
                    continue
            self.stats.batch_sizes = sizes
        for actor in [*(r.handle for r in self.remote.values()), *self.replicas]:
            ray.kill(actor, no_restart=True)

    # -- frames ----------------------------------------------------------------------------
    def _take(self, camera_id: str) -> None:
        ref = self.remote[camera_id].handle.take.remote(self.ray_config.take_timeout_s)
        self._takes[ref] = camera_id

    def _on_take(self, ref: Any, camera_id: str) -> None:
        ray = _ray()
        try:
            value = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self.stats.reader_failures += 1
            self.remote[camera_id].set_lost()
            log.warning("camera %s: reader actor lost (%s); Ray restarts it", camera_id, type(exc).__name__)
            self._retake_at[camera_id] = time.monotonic() + self.ray_config.retry_after_s
            return
        except ray.exceptions.RayError as exc:
            self.errors += 1
            log.error("camera %s: reader failed: %s", camera_id, _cause(exc))
            self._retake_at[camera_id] = time.monotonic() + self.ray_config.retry_after_s
            return
        if value == ENDED:
            self.remote[camera_id].ended = True
            return
        if isinstance(value, WireSample):
            self.slots.put(camera_id, (value, ref))  # type: ignore[arg-type]  # replaces (drops) an older one
        if not self._stop.is_set():
            self._take(camera_id)

    def _free_replica(self) -> int | None:
        best = None
        for i, up in enumerate(self._replica_up):
            if up and self._replica_load[i] < self._capacity and (
                    best is None or self._replica_load[i] < self._replica_load[best]):
                best = i
        return best

    def _send(self, camera_id: str, wire: WireSample, ref: Any, replica: int) -> None:
        count_ref = self.replicas[replica].count.remote(ref, self.models[camera_id],
                                                        self.regions.get(camera_id))
        self._in_flight[count_ref] = _InFlight(camera_id, wire, ref, replica, time.perf_counter())
        self._busy.add(camera_id)
        self._replica_load[replica] += 1

    def _dispatch(self) -> None:
        for cid in [c for c in self._held if c not in self._busy]:
            replica = self._free_replica()
            if replica is None:
                return
            wire, ref = self._held.pop(cid)
            self._send(cid, wire, ref, replica)
        while (replica := self._free_replica()) is not None:
            item = self.slots.take(timeout=0)
            if item is None:
                return
            cid, (wire, ref) = item  # type: ignore[misc]
            if cid in self._busy:  # keep it until the camera's frame in a replica is back
                if cid in self._held:
                    self.slots.stats[cid].dropped += 1
                self._held[cid] = (wire, ref)
                continue
            self._send(cid, wire, ref, replica)

    def _on_count(self, ref: Any, job: _InFlight) -> None:
        ray = _ray()
        self._busy.discard(job.camera_id)
        self._replica_load[job.replica] -= 1
        try:
            counted: Counted = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self.stats.replica_failures += 1
            log.warning("replica %d lost (%s); its frame of camera %s goes to another replica",
                        job.replica, type(exc).__name__, job.camera_id)
            self._mark_down(job.replica)
            if job.camera_id not in self._held:  # before any newer frame of the camera: order kept
                self._held[job.camera_id] = (job.wire, job.wire_ref)
                self.stats.requeued += 1
            return
        except ray.exceptions.RayError as exc:  # the frame's own error, or its pixels lost with a node
            self.errors += 1
            log.error("camera %s: frame at %.3f failed: %s", job.camera_id, job.wire.ts, _cause(exc))
            return
        stats = self.stats
        stats.frames += 1
        stats.wire_bytes += job.wire.nbytes
        stats.density_bytes += counted.density.nbytes
        stats.infer_s += counted.infer_s
        stats.decode_s += counted.decode_s
        stats.round_trip_s += time.perf_counter() - job.sent
        try:
            sample = decode_sample(job.wire)
        except Exception as exc:  # one bad frame must not stop the site
            self.errors += 1
            log.exception("camera %s: frame at %.3f failed: %s", job.camera_id, job.wire.ts, exc)
            return
        self._done.append(CountedFrame(sample, self._result(job.camera_id, counted.density, counted.height,
                                                            counted.width), counted.infer_s))

    def _mark_down(self, replica: int) -> None:
        if self._replica_up[replica]:
            self._replica_up[replica] = False
            self._pings[self.replicas[replica].info.remote()] = replica

    def _on_ping(self, ref: Any, replica: int) -> None:
        ray = _ray()
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            if not self._stop.is_set():  # still restarting: ask again
                time.sleep(0.2)
                self._pings[self.replicas[replica].info.remote()] = replica
            return
        log.info("replica %d is back", replica)
        self._replica_up[replica] = True

    def _on_health(self, ref: Any, camera_id: str) -> None:
        ray = _ray()
        try:
            self.remote[camera_id].set_health(ray.get(ref))
        except ray.exceptions.RayError:
            self.remote[camera_id].set_lost()

    def _result(self, camera_id: str, density: np.ndarray, height: int, width: int) -> DensityResult:
        """A replica's map as the in-process counter would give it: with its model's interval."""
        model = self.models.get(camera_id, "dense")
        table = self._intervals.get(base_of(model))  # a tuned camera's own interval replaces it
        interval = table.interval(float(density.sum(dtype=np.float64))) if table is not None else None
        return DensityResult(density, height, width, model=model, interval=interval)

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult:
        """A synchronous count for the rare image that is not a sampled frame (a background median)."""
        ray = _ray()
        image = validate_image(image_bgr)
        model = self.models.get(camera_id, "dense")
        for i, up in enumerate(self._replica_up):
            if up:
                try:
                    ref = self.replicas[i].count_image.remote(image, model, self.regions.get(camera_id))
                    density = ray.get(ref, timeout=300)
                except ray.exceptions.RayActorError:
                    self._mark_down(i)
                    continue
                return self._result(camera_id, density, image.shape[0], image.shape[1])
        raise RuntimeError("no model replica is available to count this image")

    # -- the worker: scheduling instead of counting ------------------------------------------
    def _step(self, timeout: float) -> None:
        ray = _ray()
        now = time.monotonic()
        for cid, at in list(self._retake_at.items()):
            if now >= at and not self._stop.is_set():
                del self._retake_at[cid]
                self._take(cid)
        if now >= self._next_health and not self._health_refs:
            self._health_refs = {r.handle.health.remote(): cid for cid, r in self.remote.items()}
            self._next_health = now + 1.0
        waiting = [*self._takes, *self._in_flight, *self._pings, *self._health_refs]
        if waiting:
            ready, _ = ray.wait(waiting, num_returns=1, timeout=timeout, fetch_local=False)
            if ready:
                ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0, fetch_local=False)
        else:
            ready = []
            self._stop.wait(timeout)
        for ref in ready:
            if ref in self._takes:
                self._on_take(ref, self._takes.pop(ref))
            elif ref in self._in_flight:
                self._on_count(ref, self._in_flight.pop(ref))
            elif ref in self._pings:
                self._on_ping(ref, self._pings.pop(ref))
            elif ref in self._health_refs:
                self._on_health(ref, self._health_refs.pop(ref))
        if not self._stop.is_set():
            self._dispatch()

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        for reader in self.readers:
            reader.start()
        for cid in self.camera_ids:
            self._take(cid)

    def next(self, timeout: float) -> CountedFrame | None:
        end = time.monotonic() + timeout
        while not self._done and not self._stop.is_set() and time.monotonic() < end:
            self._step(min(0.1, max(end - time.monotonic(), 0.0)))
        return self._done.popleft() if self._done else None

    @property
    def finished(self) -> bool:
        return (all(r.ended for r in self.remote.values()) and self.slots.depth() == 0
                and not self._held and not self._in_flight and not self._done)

    def drain(self) -> Iterator[CountedFrame]:
        """The frames the replicas hold when the run stops (one per camera at most), as they return."""
        deadline = time.monotonic() + 60.0
        while self._done or (self._in_flight and time.monotonic() < deadline):
            if self._done:
                yield self._done.popleft()
            else:
                self._step(0.5)

    def close(self) -> None:
        """Remove the actors and leave the cluster, whatever happened in the run."""
        if self._started_actors:
            self._kill_actors()
        if self.cluster is not None:
            disconnect(self.cluster)
        log.info("%s", summary_line(self.stats))


def ray_runner(prepared: PreparedSite, store: Store, counting: RayCounting, config: RunnerConfig, *,
               on_frame: Callable[[FrameOutput], None] | None = None) -> SiteRunner:
    """The runner core with frames counted on the cluster's replicas; ``summary.ray`` says what it cost."""
    summary = RaySummary(ray=counting.stats)
    return SiteRunner(prepared, store, counting, config, on_frame=on_frame, summary=summary)


def summary_line(stats: RayStats) -> str:
    """One line on what the cluster added: bytes and time per frame, restarts."""
    replicas = ", ".join(sorted({f"{i.device} {i.engine} {i.precision}" for i in stats.replicas})) or "none"
    batches = ""
    if stats.batch_sizes:
        frames = sum(k * v for k, v in stats.batch_sizes.items())
        batches = f", mean batch {frames / max(sum(stats.batch_sizes.values()), 1):.1f}"
    return (f"ray: {len(stats.replicas)} replica(s) ({replicas}); "
            f"{stats.bytes_per_frame / 1024:.0f} KiB/frame on the wire; overhead "
            f"{stats.overhead_per_frame_s * 1000:.0f} ms/frame beyond inference "
            f"({stats.infer_s / max(stats.frames, 1):.2f} s){batches}; restarts: readers "
            f"{stats.reader_failures}, replicas {stats.replica_failures}")


__all__ = ["RayConfig", "RayCounting", "RayStats", "RaySummary", "ray_runner", "summary_line"]
