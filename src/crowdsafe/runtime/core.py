"""The runner core: one site's stages, from sampled frames to stored readings and alerts, until stopped.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.core``."""

from __future__ import annotations

import logging
import os
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crowdsafe.config.site import Site, SiteError
from crowdsafe.counting.counter import DensityResult
from crowdsafe.forecast.live import ForecastStep, LiveForecasts
from crowdsafe.forecast.model import SiteForecastModel
from crowdsafe.geometry.site import SiteGeometry, build_site_geometry
from crowdsafe.notify.webhooks import WebhookNotifier
from crowdsafe.runtime.alerting import AlertSink
from crowdsafe.runtime.background import (
    BackgroundCheck,
    BackgroundPolicy,
    write_background,
    write_background_note,
)
from crowdsafe.runtime.camera import CameraHealth, CameraSource, open_camera, probe_size
from crowdsafe.runtime.pipeline import CountedFrame, FrameOutput, FramePipeline
from crowdsafe.runtime.plan import SitePlan, load_plan
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.runtime.writer import StoreWriter, WriterStats
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    state_dir: Path
    duration_s: float | None = None
    health_every_s: float = 10.0
    background: BackgroundPolicy = field(default_factory=BackgroundPolicy)
    rules: tuple[AlertRule, ...] | None = None  # None: the plan's (``safety.rules.default_rules``)
    forecast_every_s: float | None = None  # forecast every zone this often (``forecast.live``); None: off
    forecast_fit: Callable[[Site, str, int], SiteForecastModel] | None = None  # None: ``LiveForecasts``'s own
    webhooks: tuple[str, ...] = ()
    flush_deadline_s: float = 10.0
    reader_join_s: float = 2.0
    retention_s: float | None = None  # delete readings older than this (None: keep them all)
    retention_every_s: float = 3600.0
    #: Measure each frame (zones, flow, background, store, alerts) on a thread of its own while the
    #: engine counts the next one, rather than between the engine's frames (``bench --site``).
    overlap_measure: bool = True


@dataclass(frozen=True)
class PreparedSite:
    """A site checked for running: sources opened (not started) and the site compiled to its plan."""

    plan: SitePlan
    cameras: list[CameraSource]

    @property
    def site(self) -> Site:
        return self.plan.site

    @property
    def geometry(self) -> SiteGeometry:
        return self.plan.geometry


def prepare_site(site: Site, *, loop: bool = True) -> PreparedSite:
    """Open every camera's source, read the tunings and compile the plan; SourceError/SiteError
    (or TuningError) say what is wrong.

    Done before the engine starts, so a typo in a path fails in milliseconds. Frame sizes come
    from the calibration, else from the file; a stream camera must give ``image_size``.
    """
    cameras = [open_camera(site, i, cam, loop=loop) for i, cam in enumerate(site.cameras)]
    sizes = {}
    problems = []
    for i, (cam, source) in enumerate(zip(site.cameras, cameras, strict=True)):
        if cam.calibration.image_size is None:
            size = probe_size(source)
            if size is None:
                problems.append(f"cameras[{i}].calibration.image_size: unknown for this source; give "
                                "[width, height] of its frames")
            else:
                sizes[cam.id] = size
    if problems:
        raise SiteError(problems)
    return PreparedSite(load_plan(build_site_geometry(site, sizes)), cameras)


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS says, else the machine's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


@dataclass
class RunSummary:
    seconds: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    alert_changes: int = 0
    backgrounds: int = 0
    store: WriterStats = field(default_factory=WriterStats)
    flushed: bool = True
    peak_rss_mb: float = 0.0
    health: list[CameraHealth] = field(default_factory=list)
    retention_deleted: int = 0  # rows deleted for being older than RunnerConfig.retention_s
    #: Seconds the frames counted spent in the pipeline's stages (decode to alerts, ``FrameOutput.
    #: timings``), added up one after the other; waiting for the next sample is not in it. Left at 0
    #: where frames are counted elsewhere, in parallel (Ray).
    busy_s: float = 0.0
    #: The part of ``busy_s`` spent on the counting thread (fitting the frame and counting it).
    engine_s: float = 0.0
    #: Cores the engine shares with the stages beside it (``capacity_fps``).
    cores: int = field(default_factory=usable_cores)

    @property
    def frames_total(self) -> int:
        return sum(self.frames.values())

    @property
    def fps(self) -> float:
        return self.frames_total / self.seconds if self.seconds > 0 else 0.0

    @property
    def capacity_fps(self) -> float:
        """About what the pipeline would deliver fed samples as fast as it takes them, which
        ``bench --site`` measures, where ``fps`` is capped by the sampling:
        frames / (engine seconds + seconds of the other stages / cores).

        The stages beside the engine (decode on the reader, measuring and flow on their own
        thread, the store's and alerts' hand-overs) run while it counts the next frame; an
        engine that keeps every core busy loses to them their CPU time shared over the cores,
        not their whole time (docs/results/speed.md: 14 ms of CPU beside it cost a frame 9 ms on
        two cores). Each stage is timed where they did not compete, as at a live sampling the
        engine keeps up with. Where it does not (samples dropped), the stages competed and
        ``fps`` is the figure."""
        if self.busy_s <= 0:
            return 0.0
        return self.frames_total / (self.engine_s + (self.busy_s - self.engine_s) / max(self.cores, 1))


@dataclass(frozen=True)
class LiveStats:
    """What only the running process knows, for metrics next to the stored readings."""

    latency_s: dict[str, float]  # camera -> sample time to readings handed to the store, latest frame
    processing_s: dict[str, float]  # camera -> time spent in the stage chain, latest frame
    camera_fps: dict[str, float]  # camera -> frames read per second now (not at the last health row)
    frames: dict[str, int]  # camera -> frames counted so far
    dropped: dict[str, int]  # camera -> samples replaced before the engine got to them
    queue_depth: int  # samples waiting for the engine (at most one per camera)
    errors: int


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Reader(Protocol):
    """A camera's reader as the core sees it: a thread here, or a reader actor's proxy."""

    @property
    def camera_id(self) -> str: ...

    @property
    def finished(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...

    def health(self) -> CameraHealth: ...


class Counting(Protocol):
    """Where a site's frames are counted; the core asks it for counted frames and measures them.

    ``count_camera`` counts the rare image that is not a sampled frame (a background median)
    with the camera's own model. ``next`` returns the next counted frame or None after
    ``timeout``; it logs and counts (``errors``) a frame that failed, and raises only when the
    strategy itself cannot go on (the run then stops and says why). ``drain`` yields the frames
    still being counted when the run stops.
    """

    readers: Sequence[Reader]
    slots: LatestSlots[Any]
    errors: int

    def count_camera(self, camera_id: str, image_bgr: np.ndarray) -> DensityResult: ...

    def open(self) -> None: ...

    def start(self, stop: threading.Event) -> None: ...

    def next(self, timeout: float) -> CountedFrame | None: ...

    @property
    def finished(self) -> bool: ...

    def drain(self) -> Iterator[CountedFrame]: ...

    def close(self) -> None: ...


class SiteRunner:
    """Runs a prepared site, counted by ``counting``, until ``request_stop`` or the duration ends."""

    def __init__(self, prepared: PreparedSite, store: Store, counting: Counting, config: RunnerConfig, *,
                 on_frame: Callable[[FrameOutput], None] | None = None,
                 summary: RunSummary | None = None) -> None:
        self.prepared = prepared
        self.config = config
        self.on_frame = on_frame
        self.counting = counting
        self.writer = StoreWriter(store)
        notifier = WebhookNotifier(list(config.webhooks)) if config.webhooks else None
        plan = prepared.plan
        rules = list(config.rules) if config.rules is not None else list(plan.rules)
        self.alerts = AlertSink(rules, self.writer, plan.site.name, notifier, describe=plan.messages)
        self.forecast = (ForecastStep(store, prepared.site, every_s=config.forecast_every_s,
                                      alert=self.alerts.update,
                                      live=LiveForecasts(prepared.site, store=store, fit=config.forecast_fit))
                         if config.forecast_every_s else None)
        self.backgrounds_dir = config.state_dir / "backgrounds"
        self.pipeline = FramePipeline(plan, counting, background=config.background,
                                      publish_background=self._publish_background)
        self.summary = summary or RunSummary()
        self._stop = threading.Event()
        self._started_wall = time.time()
        self._stop_reason = ""
        self._latency: dict[str, float] = {}
        self._processing: dict[str, float] = {}
        self._picture_notes: dict[str, str] = {}
        # The newest row per zone and line, as written: the API's /api/zones and /api/lines read
        # this snapshot instead of querying the store, so a request burst costs counting no SQL.
        self._latest_rows: dict[str, dict[str, dict[str, object]]] = {"zone_readings": {},
                                                                      "line_readings": {}}
        self._counted_here = getattr(counting, "counts_on_runner_thread", False)  # for busy_s
        self._worker = threading.Thread(target=self._work, name="inference", daemon=True)
        # One counted frame waits for the measurer at most: the engine runs one frame ahead, no more.
        self._handoff: queue.Queue[CountedFrame | None] = queue.Queue(maxsize=1)
        self._measurer = threading.Thread(target=self._measuring, name="measure", daemon=True)

    def request_stop(self, reason: str = "") -> None:
        """Safe from a signal handler: only sets flags (no logging, no locks); threads wind down."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def readers(self) -> Sequence[Reader]:
        return self.counting.readers

    def live_stats(self) -> LiveStats:
        """A snapshot safe to take from any thread (an API request, a metrics scrape)."""
        return LiveStats(latency_s=dict(self._latency), processing_s=dict(self._processing),
                         camera_fps={r.camera_id: r.health().fps for r in self.readers},
                         frames=dict(self.summary.frames),
                         dropped={cid: st.dropped for cid, st in list(self.counting.slots.stats.items())},
                         queue_depth=self.counting.slots.depth(),
                         errors=self.summary.errors + self.counting.errors)

    def latest_rows(self, table: str) -> list[dict[str, object]] | None:
        """The newest row of each zone or line this run wrote; None before the first (the store
        then answers, with what an earlier run left). Safe from any thread: a copy of the values."""
        rows = self._latest_rows.get(table)
        return list(rows.values()) if rows else None

    def _remember(self, table: str, key: str, rows: list[dict[str, object]]) -> None:
        latest = self._latest_rows[table]
        for row in rows:
            old = latest.get(str(row[key]))
            if old is None or float(row["ts"]) >= float(old["ts"]):  # type: ignore[arg-type]
                latest[str(row[key])] = row  # one assignment: readers never see half a row

    # -- worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        hand = self._handoff.put if self.config.overlap_measure else self._measure
        try:
            while not self._stop.is_set():
                counted = self.counting.next(0.5)
                if counted is not None:
                    hand(counted)  # with overlap: waits while the measurer still has a frame waiting
                    del counted  # the pixels go now, not when the next frame arrives
                elif self.counting.finished:
                    self._stop.set()  # every source ended (files without --loop): the run is done
            for counted in self.counting.drain():  # frames still being counted when the run stopped
                hand(counted)
        except Exception as exc:  # the strategy cannot go on: stop the run and say why, never silently
            log.exception("counting failed: %s", exc)
            self.summary.errors += 1
            self.request_stop(f"counting failed: {exc}")
        finally:
            if self.config.overlap_measure:
                self._handoff.put(None)  # the measurer finishes what it was handed, then ends

    def _measuring(self) -> None:
        while (counted := self._handoff.get()) is not None:
            self._measure(counted)
            counted = None  # the pixels go now, not when the next frame arrives

    def _measure(self, counted: CountedFrame) -> None:
        camera_id, ts = counted.sample.camera_id, counted.sample.ts
        try:
            output = self.pipeline.measure(counted)
            del counted
            self._emit(output)
        except Exception as exc:  # one bad frame (or a closed stdout) must not stop the site
            self.summary.errors += 1
            log.exception("camera %s: frame at %.3f failed: %s", camera_id, ts, exc)

    def _emit(self, output: FrameOutput) -> None:
        self.summary.frames[output.camera_id] = self.summary.frames.get(output.camera_id, 0) + 1
        self._latency[output.camera_id] = max(time.time() - output.ts, 0.0)
        self._processing[output.camera_id] = sum(output.timings.values())
        if self._counted_here:
            self.summary.busy_s += self._processing[output.camera_id]
            self.summary.engine_s += output.timings.get("count_s", 0.0) + output.timings.get("sample_s", 0.0)
        t0 = time.perf_counter()
        zone_rows = [r.as_row() for r in output.zones]
        self.writer.write("zone_readings", zone_rows)
        self.writer.write("line_readings", output.line_rows)
        self._remember("zone_readings", "zone_id", zone_rows)
        self._remember("line_readings", "line_id", output.line_rows)
        t1 = time.perf_counter()
        for metric in output.metrics:
            self.alerts.update(metric.subject, metric.metric, output.ts, metric.value)
        output.timings["store_s"], output.timings["alerts_s"] = t1 - t0, time.perf_counter() - t1
        if output.background is not None:
            self._log_background(output.camera_id, output.background)
        if self.on_frame is not None:
            self.on_frame(output)

    def _publish_background(self, camera_id: str, image: np.ndarray) -> None:
        try:
            write_background(self.backgrounds_dir, camera_id, image)
        except OSError as exc:  # disk full or read-only: this frame's readings must still be stored
            log.error("camera %s: background not written: %s", camera_id, exc)
            return
        self.summary.backgrounds += 1

    @staticmethod
    def _log_background(camera_id: str, check: BackgroundCheck) -> None:
        if not check.published:
            log.info("camera %s: background not published: %s", camera_id, check.reason)
            return
        reference = "n/a" if check.reference_count is None else f"{check.reference_count:.1f}"
        log.info("camera %s: background published (median counts %.1f, emptiest frame %s; largest "
                 "unsettled area %d px, most people in one block %.2f)", camera_id, check.median_count or 0.0,
                 reference, check.unsettled_px, check.peak_people or 0.0)

    def _note_backgrounds(self, now: float) -> None:
        """Tell the API why each camera's picture is (not) published, when that changed."""
        for camera_id in self.pipeline.geometry.cameras:
            note = self.pipeline.picture_status(camera_id)
            if self._picture_notes.get(camera_id) == note:
                continue
            try:
                write_background_note(self.backgrounds_dir, camera_id, note, now)
            except OSError as exc:
                log.error("camera %s: background note not written: %s", camera_id, exc)
                continue
            self._picture_notes[camera_id] = note

    # -- supervision ----------------------------------------------------------------------
    def _health(self, now: float) -> list[CameraHealth]:
        snapshots = [r.health() for r in self.readers]
        self._note_backgrounds(now)
        self.writer.write("camera_health", [
            {"camera_id": h.camera_id, "ts": now, "status": h.status, "fps": h.fps,
             "last_frame_ts": h.last_frame_ts, "errors": h.errors,
             "message": f"{h.message()}; {self.pipeline.background_status(h.camera_id)}"}
            for h in snapshots])
        for h in snapshots:
            if h.status not in ("ended", "stopped"):
                since = h.last_frame_ts if h.last_frame_ts is not None else self._started_wall
                self.alerts.update(h.camera_id, "stale_s", now, max(now - since, 0.0))
        return snapshots

    def _apply_retention(self, cutoff_ts: float) -> None:
        """Keep only the configured age of readings: old data are deleted, not left to pile up.

        Runs on the supervising thread (one short DELETE per table); a busy or unreachable store
        is logged and retried at the next period, since counting must go on either way.
        """
        try:
            removed = self.writer.store.delete_older_than(cutoff_ts)
        except Exception as exc:
            log.warning("retention: could not delete readings before %.0f: %s", cutoff_ts, exc)
            return
        self.summary.retention_deleted += sum(removed.values())
        if any(removed.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in removed.items() if n))

    def run(self) -> RunSummary:
        """Open the strategy, block until stopped, shut down in order and return what happened."""
        self.counting.open()
        try:
            return self._run()
        finally:
            self.counting.close()

    def _retire_earlier_pictures(self) -> None:
        """Remove each camera's picture left by an earlier run before counting starts.

        It was checked against another scene, perhaps by weaker checks than this version's, and
        would be served until this run publishes its own: a picture of a person from an earlier
        run is as much a breach as one from this run. The note says why there is none yet.
        """
        for camera_id in self.pipeline.geometry.cameras:
            picture = self.backgrounds_dir / f"{camera_id}.jpg"
            try:
                if picture.is_file():
                    picture.unlink()
                    log.info("camera %s: the background picture of an earlier run was removed; "
                             "a new one is published once this run's checks pass", camera_id)
            except OSError as exc:  # read-only folder: say so, keep counting
                log.error("camera %s: could not remove the earlier background picture: %s", camera_id, exc)

    def _run(self) -> RunSummary:
        started = time.monotonic()
        self._started_wall = time.time()
        self._retire_earlier_pictures()
        self.counting.start(self._stop)
        if self.config.overlap_measure:
            self._measurer.start()
        self._worker.start()
        next_health = next_retention = started
        deadline = started + self.config.duration_s if self.config.duration_s is not None else None
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.request_stop("duration reached")
                break
            if now >= next_health:
                self._health(time.time())
                next_health = now + self.config.health_every_s
            if self.forecast is not None:  # cheap unless due; the model fits in its own thread
                self.forecast.maybe_run(time.time())
            if self.config.retention_s is not None and now >= next_retention:
                self._apply_retention(time.time() - self.config.retention_s)
                next_retention = now + self.config.retention_every_s
            wake = min(next_health, deadline) if deadline is not None else next_health
            self._stop.wait(max(min(wake - now, 0.5), 0.01))
        log.info("stopping: %s", self._stop_reason or "all sources ended")
        return self._shutdown(started)

    def _shutdown(self, started: float) -> RunSummary:
        for reader in self.readers:
            reader.stop()
        for reader in self.readers:
            if not reader.join(self.config.reader_join_s):
                log.warning("camera %s: reader still blocked on its source; abandoning it", reader.camera_id)
        self.counting.slots.close()
        self._worker.join()  # finishes the frames in hand
        if self.config.overlap_measure:
            self._measurer.join()  # ... and measures them
        self.summary.seconds = time.monotonic() - started
        self.summary.health = self._health(time.time())
        self.summary.flushed = self.writer.close(self.config.flush_deadline_s)
        self.alerts.close()
        self.summary.store = self.writer.stats
        self.summary.alert_changes = self.alerts.changes
        self.summary.errors += self.counting.errors
        self.summary.dropped = {cid: s.dropped for cid, s in self.counting.slots.stats.items()}
        self.summary.peak_rss_mb = peak_rss_mb()
        return self.summary
