"""``bench --site``: where a site's frame time goes, and how much of its engine the pipeline delivers.

The site runs through the real runner (``runtime.core.SiteRunner`` with in-process counting):
reader threads decoding and sampling, the engine, measuring, flow, the background check, the
store writer (a temporary SQLite file) and alerts; only the API is left out. Each camera's
source is its own file read as fast as the engine takes samples, at the camera's own sampling
interval in video time: a paced file would cap frames/s at the sampling rate and measure the
clock, not the pipeline. The reader waits for the engine to take a camera's sample before it
decodes the next one (never dropping), so the figure is the pipeline's capacity.

The engine-only figure is the same camera's counter (model, precision, region) on the same
sampled frames, back to back and nothing else running. Both are measured in one run, in
interleaved slices of about 20 s (engine, pipeline, engine, ...: ``SLICE_S``), so a machine whose
load changes during the run biases neither much.
"""

from __future__ import annotations

import functools
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.config.site import Site, load_site
from crowdsafe.counting import batch
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.runtime.camera import CameraSource
from crowdsafe.runtime.core import PreparedSite, RunnerConfig, SiteRunner, prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.local import InProcessCounting
from crowdsafe.runtime.pipeline import FrameFit, FrameOutput
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.sources.frames import Grab, LiveSource, SkipLog, SourceError
from crowdsafe.sources.video import VIDEO_SUFFIXES, open_capture
from crowdsafe.store.store import open_store

#: The stages of a frame, in order, as ``FrameOutput.timings`` names them (``<stage>_s``).
STAGES = ("decode", "sample", "count", "measure", "flow", "background", "store", "alerts")
#: Seconds of one engine-only and pipeline slice pair (``site_bench`` interleaves them).
SLICE_S = 20.0
#: Sampled frames the engine-only figure cycles through, per camera.
ENGINE_FRAMES = 8


class BenchError(ValueError):
    """The site cannot be benchmarked as asked (a camera that is not a video file, a bad duration)."""


class EngineFedVideo(LiveSource):
    """A camera's video file, looped, read as fast as the engine takes its samples.

    Timestamps are video time from the start of the run, so sampling intervals, flow pairs and
    line periods are the site's own. Before the first frame of each sampling period the reader is
    held until the camera's previous sample was taken (``wait_taken``, sleeping, not polling):
    samples are never dropped and no core spins decoding frames nobody counts.
    """

    def __init__(self, path: Path, every: float, name: str) -> None:
        self.path, self.every, self.name = path, every, name
        self.skipped = SkipLog()
        self._stop = threading.Event()
        #: Waits up to its argument's seconds for the camera's previous sample to be taken: True once it was.
        self.wait_taken: Callable[[float], bool] = lambda _timeout: True
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(f"{path}: not a video OpenCV can open")
            self.fps = float(cap.get(cv2.CAP_PROP_FPS))
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        finally:
            cap.release()
        if not (math.isfinite(self.fps) and 0 < self.fps < 1000):
            raise SourceError(f"{path}: the video has no frame rate")

    def grabs(self) -> Iterator[Grab]:
        # Start on a sampling boundary: the reader samples at multiples of ``every`` since the epoch.
        start, offset, period = math.floor(time.time() / self.every) * self.every, 0.0, -1
        while not self._stop.is_set():
            cap = open_capture(self.path)
            frames = 0
            try:
                while not self._stop.is_set() and cap.grab():
                    ts = offset + frames / self.fps
                    if math.floor(ts / self.every) > period:  # a sample is due: wait for the engine
                        period = math.floor(ts / self.every)
                        while not self.wait_taken(0.1) and not self._stop.is_set():
                            pass
                    yield Grab(self.name, frames, start + ts, lambda cap=cap: _retrieve(cap))
                    frames += 1
            finally:
                cap.release()
            if frames == 0:
                return
            offset += frames / self.fps


def _retrieve(cap: cv2.VideoCapture) -> np.ndarray | None:
    ok, image = cap.retrieve()
    return image if ok else None


@dataclass
class CameraBench:
    camera: str
    delivered_fps: float
    #: Engine-only frames/s of this camera when the engine serves the site's cameras in turn, as
    #: the runner does (one frame each per round): 1 / the sum of every camera's seconds per frame.
    #: With one camera, its engine alone.
    engine_fps: float
    #: Seconds per delivered frame in each stage (``STAGES``); decode runs on the reader thread,
    #: store and alerts hand rows to their own threads (the time shown is the hand-over).
    stages: dict[str, float]
    frames: int
    engine_frames: int
    dropped: int
    engine_alone_fps: float = 0.0  # this camera's counter alone, the engine serving no other camera
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.delivered_fps / self.engine_fps if self.engine_fps > 0 else 0.0


@dataclass
class SiteBench:
    site: str
    engine: str
    precision: str
    models: str
    pipeline_s: float
    engine_s: float
    cameras: list[CameraBench]
    #: This process's CPU seconds (all threads) per frame: engine-only frames, and frames through the
    #: whole pipeline. On a machine shared with other jobs the wall-clock rates depend on the CPU share
    #: the scheduler gives the process (more runnable threads, more share); the CPU cost per frame
    #: does not, so it says what the stages beside the engine cost where wall clocks cannot.
    engine_cpu_s_per_frame: float = 0.0
    pipeline_cpu_s_per_frame: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def engine_fed(prepared: PreparedSite) -> PreparedSite:
    """The site with every camera's video read as fast as the engine takes samples."""
    cameras = []
    for cam, source in zip(prepared.site.cameras, prepared.cameras, strict=True):
        path = Path(prepared.site.resolve_source(cam))
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
            raise BenchError(f"camera {cam.id}: bench --site needs a video file as the source, not {path}")
        video = EngineFedVideo(path, source.every, cam.id)
        cameras.append(CameraSource(cam.id, video, source.every, pairs=True, size=video.size,
                                    nominal_fps=video.fps))
    return replace(prepared, cameras=cameras)


def sampled_frames(site: Site, index: int, fit: FrameFit, count: int = ENGINE_FRAMES) -> list[np.ndarray]:
    """The camera's first ``count`` sampled frames (one per sampling interval), at the calibration's size."""
    cam = site.cameras[index]
    cap = cv2.VideoCapture(str(site.resolve_source(cam)))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(round(cam.sampling.seconds * fps), 1)
    frames: list[np.ndarray] = []
    try:
        position = 0
        while len(frames) < count and cap.grab():
            if position % step == 0:
                ok, image = cap.retrieve()
                if ok:
                    frames.append(fit(cam.id, image))
            position += 1
    finally:
        cap.release()
    if not frames:
        raise BenchError(f"camera {cam.id}: no frame could be read")
    return frames


def engine_only(counter: Counts, frames: list[np.ndarray], seconds: float) -> tuple[int, float]:
    """(frames counted, wall seconds) counting ``frames`` in turn for about ``seconds``, at least two."""
    n, start = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - start < seconds:
        counter.count(frames[n % len(frames)])
        n += 1
    return n, time.perf_counter() - start


def site_bench(site_path: Path, spec: EngineSpec, duration_s: float = 60.0,
               factory: Callable[[EngineSpec], Counts] = batch.make_counter,
               progress: Callable[[str], None] = lambda _: None, *, overlap: bool = True) -> SiteBench:
    """Half of ``duration_s`` engine-only, half the whole pipeline, interleaved in slices."""
    if duration_s <= 0:
        raise BenchError("--duration must be positive")
    site = load_site(site_path)
    base = prepare_site(site, loop=True)
    prepared = engine_fed(base)
    counters = CameraCounters(prepared.plan, spec, factory)
    fit = FrameFit(prepared.geometry)
    inputs = {cam.id: sampled_frames(site, i, fit) for i, cam in enumerate(site.cameras)}
    for cid, frames in inputs.items():  # compile each camera's shapes before anything is timed
        counters.for_camera(cid).count(frames[0])
    engine_n = dict.fromkeys(inputs, 0)
    engine_t = dict.fromkeys(inputs, 0.0)

    cpu = {"engine": 0.0, "pipeline": 0.0}

    def engine_phase(seconds: float) -> None:
        c0 = time.process_time()
        for cid, frames in inputs.items():
            n, t = engine_only(counters.for_camera(cid), frames, seconds / len(inputs))
            engine_n[cid] += n
            engine_t[cid] += t
        cpu["engine"] += time.process_time() - c0

    # Interleaved in slices of about SLICE_S (engine half a slice, then pipeline and engine in
    # turn, engine half a slice last): a load that changes during the run falls on both alike.
    slices = max(1, round(duration_s / SLICE_S))
    piece = duration_s / (2 * slices)
    outputs: list[FrameOutput] = []
    pipeline_s = 0.0
    dropped: dict[str, int] = {}
    for k in range(slices):
        progress(f"slice {k + 1} of {slices}: engine only, {piece / (2 if k == 0 else 1):.0f} s")
        engine_phase(piece / 2 if k == 0 else piece)
        progress(f"slice {k + 1} of {slices}: whole pipeline, {piece:.0f} s")
        c0 = time.process_time()
        # fresh sources each slice: the last slice's run stopped its readers
        out, seconds, drops = _pipeline(engine_fed(base), counters, piece, overlap)
        cpu["pipeline"] += time.process_time() - c0
        outputs += out
        pipeline_s += seconds
        for cid, n in drops.items():
            dropped[cid] = dropped.get(cid, 0) + n
    progress(f"engine only, {piece / 2:.0f} s")
    engine_phase(piece / 2)

    alone = {cid: engine_n[cid] / engine_t[cid] for cid in inputs}
    in_turn = 1.0 / sum(1.0 / fps for fps in alone.values())
    rows = []
    for cid in inputs:
        mine = [o for o in outputs if o.camera_id == cid]
        stages = {name: statistics.fmean(o.timings.get(f"{name}_s", 0.0) for o in mine) if mine else 0.0
                  for name in STAGES}
        rows.append(CameraBench(cid, len(mine) / pipeline_s, in_turn, stages, len(mine), engine_n[cid],
                                dropped.get(cid, 0), alone[cid]))
    first = next(iter(counters.models.values()), "")
    engine = counters.engine
    return SiteBench(str(site_path), str(getattr(engine, "name", spec.engine)),
                     str(getattr(engine, "precision", spec.precision)), counters.describe() or first,
                     pipeline_s, sum(engine_t.values()), rows,
                     cpu["engine"] / max(sum(engine_n.values()), 1), cpu["pipeline"] / max(len(outputs), 1))


def _pipeline(prepared: PreparedSite, counters: CameraCounters, seconds: float,
              overlap: bool = True) -> tuple[list[FrameOutput], float, dict[str, int]]:
    """The runner on the engine-fed site for ``seconds``: its outputs, wall seconds and drops."""
    outputs: list[FrameOutput] = []
    with tempfile.TemporaryDirectory(prefix="crowdsafe-bench-") as state:
        store = open_store(str(Path(state) / "bench.sqlite"))
        try:
            counting = InProcessCounting(prepared, counters)
            _hold_readers(prepared, counting.slots)
            config = RunnerConfig(state_dir=Path(state), duration_s=seconds, health_every_s=10.0,
                                  overlap_measure=overlap)
            runner = SiteRunner(prepared, store, counting, config, on_frame=outputs.append)
            summary = runner.run()
        finally:
            store.close()
    return outputs, summary.seconds, summary.dropped


def _hold_readers(prepared: PreparedSite, slots: LatestSlots[object]) -> None:
    for cam in prepared.cameras:
        if isinstance(cam.source, EngineFedVideo):
            cam.source.wait_taken = functools.partial(slots.wait_taken, cam.camera_id)
