"""The per-frame steps: counting (image → density map) apart from measuring (density → readings).

Why and how: docs/design-notes.md, ``crowdsafe.runtime.pipeline``."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from crowdsafe.counting.counter import CountsCameras, DensityResult
from crowdsafe.counting.tuning import CameraTuning
from crowdsafe.geometry.body import BodyMotion, body_motion
from crowdsafe.geometry.lines import LinePlan
from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.measure.flow import (
    GateBand,
    GateCrossings,
    band_box,
    band_half_width_m,
    flow_in_box,
    optical_flow,
)
from crowdsafe.measure.metrics import Metric, zone_metrics
from crowdsafe.measure.zones import ZoneReading, zone_readings
from crowdsafe.runtime.background import (
    BackgroundCheck,
    BackgroundPolicy,
    CameraBackground,
    DensityBackground,
    PersonEvidence,
)
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.plan import SitePlan, as_plan

log = logging.getLogger(__name__)

#: Longest gap between two frames of a camera still bridged by a line's in/out counts, in
#: sampling periods: beyond it (camera down, runner overloaded) flow is counted for one period
#: only, rather than extrapolating one pair of frames over minutes.
MAX_PERIODS_BRIDGED = 5.0
#: Gate bands (one per line and depth) the measuring step keeps worked out at most: a band holds
#: its read points' taps (a few hundred kB on the demo gate), and a loaded runner's shorter
#: intervals ask for a few depths besides the configured one.
MAX_GATE_BANDS = 32


@dataclass
class FrameOutput:
    """What one sampled frame produced; rows are ready for the store."""

    camera_id: str
    ts: float
    count: float
    zones: list[ZoneReading]
    line_rows: list[dict[str, object]]
    metrics: list[Metric]
    background: BackgroundCheck | None = None
    timings: dict[str, float] = field(default_factory=dict)
    frame_index: int | None = None  # the sample's frame number in its source, when it has one
    interval: tuple[float, float] | None = None  # (low, high) of ``count``, when known


@dataclass(frozen=True)
class CountedFrame:
    """The counting step's result: the sample (at the calibration's size) and its raw density.

    Where it was counted (this process, a Ray replica) does not matter to the measuring step.
    """

    sample: Sample
    raw: DensityResult
    count_s: float = 0.0
    sample_s: float = 0.0  # fitting the sample to the calibration's size, before counting


class FrameFit:
    """Frames at another resolution than the calibration are resized to it (same view assumed)."""

    def __init__(self, geometry: SiteGeometry) -> None:
        self.sizes = {cid: cam.ground_map.image_size for cid, cam in geometry.cameras.items()}
        self._warned: set[str] = set()

    def __call__(self, camera_id: str, image: np.ndarray) -> np.ndarray:
        width, height = self.sizes[camera_id]
        if image.shape[1] == width and image.shape[0] == height:
            return image
        if camera_id not in self._warned:
            self._warned.add(camera_id)
            log.warning("camera %s: frames are %dx%d but the calibration is for %dx%d; resizing",
                        camera_id, image.shape[1], image.shape[0], width, height)
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def sample(self, sample: Sample) -> Sample:
        """The sample with its frame and its flow pair at the calibration's size."""
        image = self(sample.camera_id, sample.image)
        pair = None if sample.pair is None else self(sample.camera_id, sample.pair)
        if image is sample.image and pair is sample.pair:
            return sample
        return replace(sample, image=image, pair=pair)


def count_frame(counting: CountsCameras, fit: FrameFit, sample: Sample) -> CountedFrame:
    """The counting step in this process: the frame at the calibration's size, and its density."""
    t0 = time.perf_counter()
    fitted = fit.sample(sample)
    t1 = time.perf_counter()
    raw = counting.count_camera(fitted.camera_id, fitted.image)
    return CountedFrame(fitted, raw, time.perf_counter() - t1, t1 - t0)


class FramePipeline:
    """The measuring step: from a counted frame to readings; holds per-camera maps and timings.

    ``counting`` is asked only for the rare image that is not a sampled frame (the background
    check's median), with the camera's own model, so its empty-scene level is the reference.
    Profiles, line plans and tunings come from the site's plan; given only the geometry, the plan
    is compiled here (with ``tunings`` in place of the site's where given).
    """

    def __init__(self, plan: SitePlan | SiteGeometry, counting: CountsCameras, *,
                 background: BackgroundPolicy | None = None,
                 publish_background: Callable[[str, np.ndarray], None] | None = None,
                 tunings: dict[str, CameraTuning] | None = None,
                 flow: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = optical_flow) -> None:
        self.plan = plan = as_plan(plan, tunings)
        self.geometry = geometry = plan.geometry
        self.flow = flow  # image velocity between a frame and its pair (a parameter: tests give one)
        self.counting = counting
        self.fit = FrameFit(geometry)
        self.book = plan.profiles
        self.lines = plan.lines
        self.every = {cam.id: cam.sampling.seconds for cam in geometry.site.cameras}
        self._latest: dict[str, tuple[float, DensityResult]] = {}
        self._previous_ts: dict[str, float] = {}
        self._policy = background or BackgroundPolicy()
        self._backgrounds = {cid: CameraBackground(self._policy) for cid in geometry.cameras}
        self.tunings = plan.tunings
        self._densities = {cid: DensityBackground(self._policy) for cid in geometry.cameras}
        for cid, tuning in self.tunings.items():
            if cid in self._densities and tuning.background and tuning.background_density is not None:
                self._densities[cid].capture(tuning.background_density)
        self._raw: dict[str, np.ndarray] = {}
        self._evidence = {cid: PersonEvidence(self._policy.person_window_people) for cid in geometry.cameras}
        self._publish = publish_background
        self._bodies: dict[str, BodyMotion | None] = {}
        self._flow_boxes: dict[tuple[str, float, bool], tuple[int, int, int, int]] = {}
        self._band_cells: dict[tuple[str, float, int], tuple[slice, slice]] = {}
        self._gate_bands: OrderedDict[tuple[object, ...], GateBand] = OrderedDict()

    def _fresh_results(self, ts: float) -> dict[str, DensityResult]:
        """Newest density map of each camera not older than a few of its sampling periods."""
        return {cid: result for cid, (t, result) in self._latest.items()
                if ts - t <= max(3 * self.every[cid], 10.0)}

    def _period(self, camera_id: str, ts: float) -> float:
        every = self.every[camera_id]
        previous = self._previous_ts.get(camera_id)
        if previous is None or not 0 < ts - previous <= MAX_PERIODS_BRIDGED * every:
            return every
        return ts - previous

    def process(self, sample: Sample) -> FrameOutput:
        """Count the sample here, then measure it (evaluation, and tests of both steps together)."""
        return self.measure(count_frame(self.counting, self.fit, sample))

    def measure(self, counted: CountedFrame) -> FrameOutput:
        sample = self.fit.sample(counted.sample)
        cid, ts, image = sample.camera_id, sample.ts, sample.image
        timings = {"decode_s": sample.decode_s, "sample_s": counted.sample_s, "count_s": counted.count_s}
        t1 = time.perf_counter()
        result = self._corrected(cid, ts, counted.raw)
        self._evidence[cid].note(ts, counted.raw.density, self._densities[cid].captured, image,
                                 max_gap_s=MAX_PERIODS_BRIDGED * self.every[cid])
        self._latest[cid] = (ts, result)
        cam = self.geometry.cameras[cid]
        fresh = self._fresh_results(ts)
        intervals = {c: r.interval for c, r in fresh.items() if r.interval is not None}
        readings = [r for r in zone_readings(self.geometry, fresh, ts, profiles=self.book,
                                             intervals=intervals or None)
                    if cam.zone_owned_m2.get(r.zone_id, 0.0) > 0]
        period = self._period(cid, ts)
        self._previous_ts[cid] = ts
        timings["measure_s"] = time.perf_counter() - t1
        t_flow = time.perf_counter()
        line_rows, line_metrics = self._lines(cid, ts, image, sample, result, period)
        timings["flow_s"] = time.perf_counter() - t_flow

        t2 = time.perf_counter()
        check = self.offer_background(cid, ts, image, result.count)
        timings["background_s"] = time.perf_counter() - t2
        return FrameOutput(cid, ts, result.count, readings, line_rows,
                           zone_metrics(self.geometry, readings, self.book) + line_metrics, check, timings,
                           sample.frame_index, result.interval)

    def _corrected(self, cid: str, ts: float, raw: DensityResult) -> DensityResult:
        """The camera's density with its background removed and its tuning applied (design notes)."""
        model = self._densities[cid]
        self._raw[cid] = raw.density
        tuning = self.tunings.get(cid)
        if tuning is not None:
            density = model.apply(raw.density) if tuning.background else raw.density
            density = (density * np.float32(tuning.gain)).astype(np.float32, copy=False)
            total = float(density.sum(dtype=np.float64))
            return replace(raw, density=density, interval=tuning.count_interval(total))
        model.add(raw.density, ts)  # learned only from near-empty frames (DensityBackground)
        density = model.apply(raw.density)
        if density is raw.density:
            return raw
        interval = raw.interval
        if interval is not None:
            raw_total = raw.count
            ratio = float(density.sum(dtype=np.float64)) / raw_total if raw_total > 0 else 1.0
            interval = (interval[0] * ratio, interval[1])
        return replace(raw, density=density, interval=interval)

    def background_status(self, camera_id: str) -> str:
        """For the camera's health: whether a background density is subtracted, and which."""
        tuning = self.tunings.get(camera_id)
        if tuning is not None and not tuning.background:
            return f"tuned ({tuning.model}, gain {tuning.gain:.2f}): background subtraction off by tuning"
        status = self._densities[camera_id].status()
        return status if tuning is None else f"tuned ({tuning.model}, gain {tuning.gain:.2f}): {status}"

    def picture_status(self, camera_id: str) -> str:
        """For the API and the dashboard: whether the camera's background picture is published, or why not."""
        return self._backgrounds[camera_id].status()

    def capture_background(self, camera_id: str) -> tuple[bool, str]:
        """Take the camera's latest (uncorrected) density as its background; for an empty site only.

        Refused, with the reason, unless the camera's last frames show nobody at all, by the
        counter or by motion (``PersonEvidence``): one person captured as "empty" would be
        subtracted from every later count. Returns (captured, its new status or the reason).
        """
        density = self._raw.get(camera_id)
        if density is None:
            return False, "the camera has not been counted yet"
        reason = self._evidence[camera_id].why_not_empty()
        if reason is not None:
            return False, reason
        self._densities[camera_id].capture(density, undoable=True)
        return True, self.background_status(camera_id)

    def undo_capture(self, camera_id: str) -> tuple[bool, str]:
        """Restore the background in use before the camera's last capture: (undone, status or reason)."""
        if not self._densities[camera_id].undo():
            return False, "no capture to undo"
        return True, self.background_status(camera_id)

    def _lines(self, cid: str, ts: float, image: np.ndarray, sample: Sample, result: DensityResult,
               period: float) -> tuple[list[dict[str, object]], list[Metric]]:
        plans = [p for p in self.lines.values() if p.camera_id == cid]
        if not plans or sample.pair is None or not sample.pair_dt:
            return [], []
        pair = sample.pair  # at the calibration's size, as the frame (FrameFit.sample)
        body = self._body(cid) if result.cell == self.geometry.cameras[cid].ground_map.cell else None
        # The band is as deep as a walk of the period, but never deeper than one of the camera's
        # configured sampling period: a loaded runner's longer intervals would push it metres from
        # the gate (out of view, among people turning away), where the flux through a copy is not
        # the gate's. Times the actual period, a band of any depth is unbiased. The flow box holds
        # the deepest band, so it is computed once per camera.
        half_width = band_half_width_m(min(period, self.every[cid]))
        deepest = band_half_width_m(self.every[cid])
        # Flux is density x velocity: where the bands hold no density at all (nobody near any of
        # the camera's lines) every crossing is exactly zero, whatever the velocity, so the flow
        # is not computed.
        nobody = not np.any(result.density[self._density_cells(cid, plans, deepest, result.cell)])
        velocity = None if nobody else \
            flow_in_box(self.flow, image, pair, sample.pair_dt, self._flow_box(cid, plans, deepest, body))
        rows: list[dict[str, object]] = []
        metrics = []
        for plan in plans:
            # Flux averaged over a band on the side each way leaves to, over the gate's passage:
            # a snapshot through the line alone times the period misses or doubles whoever is on
            # the line at the sample, and a line as narrow as the gate loses the blur beyond its
            # ends (benchmarks/bottleneck.py).
            counts = GateCrossings(0.0, 0.0) if velocity is None else \
                self._gate_band(plan, result, velocity, half_width, body).crossings(result.density, velocity,
                                                                                   period)
            in_n, out_n = max(counts.in_count, 0.0) + 0.0, max(counts.out_count, 0.0) + 0.0  # not -0.0
            pmm = (in_n + out_n) / period * 60.0 / plan.width_m
            rows.append({"line_id": plan.line_id, "ts": ts, "period_s": period, "in_count": in_n,
                         "out_count": out_n, "flow_pmm": pmm})
            metrics.append(Metric(plan.line_id, "flow_pmm", pmm))
        return rows, metrics

    def _flow_box(self, cid: str, plans: list[LinePlan], half_width: float,
                  body: BodyMotion | None) -> tuple[int, int, int, int]:
        """The part of the camera's frame its lines read velocity in, for a band's half-width
        (computed once per camera): optical flow elsewhere would be computed for nobody."""
        key = (cid, half_width, body is not None)
        box = self._flow_boxes.get(key)
        if box is None:
            gm = self.geometry.cameras[cid].ground_map
            reach = (0.0, 0.0, 0.0, 0.0)
            if body is not None:
                off = body.offset_px.reshape(-1, 2)
                reach = (max(-off[:, 0].min(), 0.0), max(-off[:, 1].min(), 0.0),
                         max(off[:, 0].max(), 0.0), max(off[:, 1].max(), 0.0))
            box = _union([band_box(gm.ground_to_image, *p.passage, p.in_normal, half_width,
                                   gm.image_size, reach) for p in plans])
            self._flow_boxes[key] = box
        return box

    def _gate_band(self, plan: LinePlan, result: DensityResult, velocity: np.ndarray, half_width: float,
                   body: BodyMotion | None) -> GateBand:
        """The line's band at this depth (``band_crossings``), worked out on first use: the same every
        frame but for the few depths a loaded runner's shorter intervals ask for."""
        key = (plan.line_id, half_width, result.density.shape[:2], velocity.shape[:2], result.cell,
               body is not None)
        band = self._gate_bands.get(key)
        if band is None:
            while len(self._gate_bands) >= MAX_GATE_BANDS:  # the least recently read goes: never grow
                self._gate_bands.popitem(last=False)
            gm = self.geometry.cameras[plan.camera_id].ground_map
            band = GateBand(gm.ground_to_image, result.cell, result.density.shape[:2], velocity.shape[:2],
                            *plan.passage, plan.in_normal, half_width, body)
            self._gate_bands[key] = band
        self._gate_bands.move_to_end(key)
        return band

    def _density_cells(self, cid: str, plans: list[LinePlan], half_width: float,
                       cell: int) -> tuple[slice, slice]:
        """The density map's cells the camera's bands read (``band_crossings`` reads density at the
        heads on its lines, bilinearly: a cell's margin around them), cached as ``_flow_box``."""
        key = (cid, half_width, cell)
        cells = self._band_cells.get(key)
        if cells is None:
            gm = self.geometry.cameras[cid].ground_map
            x0, y0, x1, y1 = _union([band_box(gm.ground_to_image, *p.passage, p.in_normal, half_width,
                                              gm.image_size, margin_px=cell) for p in plans])
            cells = (slice(y0 // cell, -(-y1 // cell)), slice(x0 // cell, -(-x1 // cell)))
            self._band_cells[key] = cells
        return cells

    def _body(self, cid: str) -> BodyMotion | None:
        """The camera's body-motion fields, computed on first use (only cameras with lines need them)."""
        if cid not in self._bodies:
            self._bodies[cid] = body_motion(self.geometry.cameras[cid].ground_map)
        return self._bodies[cid]

    def offer_background(self, cid: str, ts: float, image: np.ndarray,
                         count: float) -> BackgroundCheck | None:
        """The frame (and its count) to the camera's picture ring; when a check is due, judge the
        median and publish it if it passed. The one way a picture gets published."""
        model = self._backgrounds[cid]
        model.add_counted(image, count, ts)
        if not model.due(ts):
            return None
        # Only an empty-scene density nobody could have stood in is allowed to explain density
        # away: a commissioning's or an operator's capture, never one learned from live frames.
        texture = self._densities[cid].captured
        region = getattr(self.counting, "regions", {}).get(cid)  # (core, crop) when not the whole frame
        box = None if region is None else (region[0].x0, region[0].y0, region[0].x1, region[0].y1)
        check = model.check(lambda img: self.counting.count_camera(cid, img), ts, texture, box)
        if check.image is not None and self._publish is not None:
            self._publish(cid, check.image)
        return check


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The smallest box (x0, y0, x1, y1) holding all of ``boxes``."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))
