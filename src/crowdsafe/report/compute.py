"""The debrief's numbers, computed from the store: no plotting, no HTML, so every number is testable.

Why and how: docs/design-notes.md, ``crowdsafe.report.compute``."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import crowdsafe.store.queries as queries
from crowdsafe.config.site import Site, Zone
from crowdsafe.forecast.forecaster import resample_minutes
from crowdsafe.forecast.model import SiteForecastModel
from crowdsafe.forecast.schedule import STEP_S, zone_area
from crowdsafe.forecast.staffing import zone_stewards
from crowdsafe.geometry.siteview import SiteView, build_site_view
from crowdsafe.simulate.clearance import live_clearance_s
from crowdsafe.store import Store

#: A step between two readings longer than this many median steps is a gap, not time in a band.
GAP_FACTOR = 2.0
#: Most points per chart series: 12 h at one-minute means is 720; more would only bloat the file.
MAX_POINTS = 480
#: The risk thresholds every density chart shows (p/m²): slowed, critical when moving, dangerous.
RISK_LINES_PM2 = (2.0, 4.0, 5.0)
#: Forecast check: how far ahead (minutes) and how often (minutes) forecasts are re-issued.
FORECAST_HORIZON_MIN = 15
FORECAST_EVERY_MIN = 5
STAFF_SLOT_MIN = 15
_DROPPED = re.compile(r"dropped (\d+)")
_SAMPLES = re.compile(r"samples (\d+)")


@dataclass(frozen=True)
class Series:
    """Bucketed means from ``Store.history``: the same buckets the API's history routes return."""

    ts: list[float]
    mean: list[float]
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ForecastCheck:
    """Forecasts issued every ``FORECAST_EVERY_MIN`` during the period, scored on what happened."""

    horizon_min: int
    method: str
    target_ts: list[float]
    forecast: list[float]
    lo80: list[float]
    hi80: list[float]
    actual: list[float]

    @property
    def mae(self) -> float | None:
        if not self.actual:
            return None
        return float(np.mean(np.abs(np.asarray(self.forecast) - np.asarray(self.actual))))

    @property
    def coverage80(self) -> float | None:
        """Share of actual minutes inside the 80 % interval (should be near 0.8)."""
        if not self.actual or not self.lo80:
            return None
        a, lo, hi = (np.asarray(v) for v in (self.actual, self.lo80, self.hi80))
        return float(np.mean((a >= lo) & (a <= hi)))


@dataclass(frozen=True)
class ZoneSummary:
    zone_id: str
    name: str
    capacity: int | None
    area_m2: float
    readings: int
    peak_count: float | None = None
    peak_count_ts: float | None = None
    peak_density: float | None = None
    peak_density_ts: float | None = None
    mean_count: float | None = None
    mean_density: float | None = None
    min_coverage_pct: float | None = None
    los_bands: list[tuple[str, float | None]] = field(default_factory=list)  # (label, upper p/m²)
    los_seconds: dict[str, float] = field(default_factory=dict)
    risk_seconds: dict[str, float] = field(default_factory=dict)
    measured_s: float = 0.0
    count: Series | None = None
    density: Series | None = None
    forecast: ForecastCheck | None = None
    forecast_note: str | None = None

    @property
    def peak_pct_of_capacity(self) -> float | None:
        if self.peak_count is None or not self.capacity:
            return None
        return 100.0 * self.peak_count / self.capacity


@dataclass(frozen=True)
class GateSummary:
    line_id: str
    name: str
    width_m: float
    readings: int
    total_in: float = 0.0
    total_out: float = 0.0
    peak_flow_pmm: float | None = None
    peak_flow_ts: float | None = None
    flow: Series | None = None
    cumulative_ts: list[float] = field(default_factory=list)
    cumulative_in: list[float] = field(default_factory=list)
    cumulative_out: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    rule: str
    subject: str
    severity: str
    state: str
    raised_ts: float
    acknowledged_ts: float | None
    acknowledged_by: str | None
    cleared_ts: float | None
    message: str | None
    note: str | None = None  # the operator's note with the acknowledgement

    @property
    def ack_s(self) -> float | None:
        return None if self.acknowledged_ts is None else self.acknowledged_ts - self.raised_ts


@dataclass(frozen=True)
class StaffRow:
    zone_id: str
    slot_start_ts: float
    peak_count: float
    recommended: int
    planned: int | None

    @property
    def shortfall(self) -> int | None:
        return None if self.planned is None else max(self.recommended - self.planned, 0)


@dataclass(frozen=True)
class EgressRow:
    zone_id: str
    peak_count: float
    peak_ts: float
    clearance_s: float
    target_s: float

    @property
    def within_target(self) -> bool:
        return self.clearance_s <= self.target_s


@dataclass(frozen=True)
class CameraQuality:
    camera_id: str
    model: str
    health_rows: int
    uptime_pct: float
    up_intervals: list[tuple[float, float]]
    gaps: list[tuple[float, float]]
    samples: int
    dropped: int
    tuned: bool  # the site file sets this camera's model or gives it a tuning (``crowdsafe tune``)
    tuning: str | None = None  # the tuning file named in the site file
    not_running: list[tuple[float, float]] = field(default_factory=list)  # before its first health row


@dataclass(frozen=True)
class CameraOverlay:
    """What the people-free picture of a camera shows: its zones in image pixels and their mean p/m²."""

    camera_id: str
    image_size: tuple[int, int] | None
    background: Path | None
    zones: dict[str, list[list[list[float]]]]  # zone id -> rings of [u, v]
    mean_density: dict[str, float]


@dataclass(frozen=True)
class SignOff:
    """Who prepared and who reviewed the debrief, and when; blank fields are signed on paper."""

    prepared_by: str = ""
    reviewed_by: str = ""
    date: str = ""


@dataclass(frozen=True)
class Report:
    site_name: str
    start: float
    end: float
    resolution_s: float
    zones: list[ZoneSummary]
    gates: list[GateSummary]
    alerts: list[AlertRow]
    risk_bands: list[tuple[str, float | None]]
    staffing: list[StaffRow] | None
    staffing_note: str
    egress: list[EgressRow]
    egress_target_s: float
    cameras: list[CameraQuality]
    overlays: list[CameraOverlay]
    site_flow_limits: dict[str, float]
    timezone: str = "UTC"  # the site's (``timezone`` in the site file): times are shown in it, UTC alongside
    signoff: SignOff = field(default_factory=SignOff)
    #: The schedule's events in the period and what their forecast crowd came from, as known at
    #: each event's doors (``series.EventSource``: history of the series, attendance, none).
    events: list[Any] = field(default_factory=list)
    #: The audit trail of the period (``Store.audit_trail``): background captures, undos, refusals.
    operator_actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def alerts_by_severity(self) -> dict[str, int]:
        return dict(sorted(Counter(a.severity for a in self.alerts).items()))

    @property
    def low_coverage(self) -> list[ZoneSummary]:
        return [z for z in self.zones if z.min_coverage_pct is not None and z.min_coverage_pct < 100.0]


# -- helpers -----------------------------------------------------------------------------------
def classify(value: float | None, bands: Sequence[tuple[str, float | None]]) -> str | None:
    """The band a value falls in (``(label, upper)`` pairs, ascending; ``None`` is open-ended), as
    both the HTML and the PDF charts colour it; no band for a missing value."""
    if value is None or math.isnan(value):
        return None
    for label, upper in bands:
        if upper is None or value < upper:
            return label
    return bands[-1][0]


def holds(ts: list[float], end: float) -> list[float]:
    """Seconds each reading stands for (see docs/design-notes.md); one reading alone stands for 0."""
    if len(ts) < 2:
        return [0.0] * len(ts)
    steps = np.diff(np.asarray(ts, dtype=float))
    step = float(np.median(steps))
    out = [float(d) if d <= GAP_FACTOR * step else step for d in steps]
    out.append(max(0.0, min(step, end - ts[-1])))
    return out


def resolution_for(start: float, end: float, max_points: int = MAX_POINTS) -> float:
    """Bucket seconds for charts: whole seconds, at least 1, at most ``max_points`` buckets."""
    return float(max(1, math.ceil((end - start) / max_points)))


def _first_max(rows: list[dict[str, Any]], column: str) -> tuple[float | None, float | None]:
    best: tuple[float | None, float | None] = (None, None)
    for row in rows:
        value = row.get(column)
        if value is not None and (best[0] is None or value > best[0]):
            best = (float(value), float(row["ts"]))
    return best


def _series(store: Store, table: str, key: str, column: str, start: float, end: float, resolution_s: float,
            band: tuple[str, str] | None = None) -> Series:
    rows = store.history(table, key, column, start, end, resolution_s)
    low: list[float] = []
    high: list[float] = []
    if band is not None:
        lo = {b: m for b, m, *_ in store.history(table, key, band[0], start, end, resolution_s)}
        hi = {b: m for b, m, *_ in store.history(table, key, band[1], start, end, resolution_s)}
        low = [lo.get(b, math.nan) for b, *_ in rows]
        high = [hi.get(b, math.nan) for b, *_ in rows]
    return Series([b for b, *_ in rows], [m for _, m, *_ in rows], low, high)


def _bands(profile: Any) -> list[tuple[str, float | None]]:
    return [(b.label, None if math.isinf(b.upper) else b.upper) for b in profile.bands]


# -- sections ----------------------------------------------------------------------------------
def zone_summary(store: Store, site: Site, zone: Zone, start: float, end: float,
                 resolution_s: float) -> ZoneSummary:
    """Peaks, means, time in each LoS and risk band, and the chart series of one zone."""
    book = site.safety.profile_book()
    los_profile = book.los_profile(zone.type, zone.los_profile)
    rows = store.query("zone_readings", zone.id, start, end, limit=10_000_000)
    base = {"zone_id": zone.id, "name": zone.label, "capacity": zone.capacity, "area_m2": zone_area(zone),
            "readings": len(rows), "los_bands": _bands(los_profile)}
    if not rows:
        return ZoneSummary(**base)
    durations = holds([r["ts"] for r in rows], end)
    los_s: dict[str, float] = {label: 0.0 for label, _ in _bands(los_profile)}
    risk_s: dict[str, float] = {label: 0.0 for label, _ in _bands(book.risk)}
    for row, held in zip(rows, durations, strict=True):
        if row["los"] is not None:
            los_s[row["los"]] = los_s.get(row["los"], 0.0) + held
        if row["risk"] is not None:
            risk_s[row["risk"]] = risk_s.get(row["risk"], 0.0) + held
    peak_count, peak_count_ts = _first_max(rows, "count")
    peak_density, peak_density_ts = _first_max(rows, "density")
    densities = [r["density"] for r in rows if r["density"] is not None]
    coverage = [r["coverage_pct"] for r in rows if r["coverage_pct"] is not None]
    return ZoneSummary(
        **base,
        peak_count=peak_count,
        peak_count_ts=peak_count_ts,
        peak_density=peak_density,
        peak_density_ts=peak_density_ts,
        mean_count=float(np.mean([r["count"] for r in rows])),
        mean_density=float(np.mean(densities)) if densities else None,
        min_coverage_pct=min(coverage) if coverage else None,
        los_seconds=los_s,
        risk_seconds=risk_s,
        measured_s=float(sum(durations)),
        count=_series(store, "zone_readings", zone.id, "count", start, end, resolution_s,
                      band=("count_low", "count_high")),
        density=_series(store, "zone_readings", zone.id, "density", start, end, resolution_s),
    )


def event_rows(store: Store, site: Site, start: float, end: float) -> list[Any]:
    """Each schedule event overlapping [start, end] and where its forecast crowd came from, as the
    forecaster knew it before the doors: the series' stored occurrences up to then, else the
    attendance-scaled arrival curve."""
    from crowdsafe.forecast.schedule import LEAD_MIN, event_sources, site_events, sources_between
    from crowdsafe.forecast.series import learn_series, learned_counts

    events = site_events(site)
    out = []
    for ev in events:
        before = ev.doors_ts - LEAD_MIN * 60.0
        curves = learn_series(store, site, before, events) if ev.series else {}
        out += sources_between(event_sources([ev], learned_counts([ev], curves, before)), [ev], start, end)
    return out


def forecast_check(store: Store, site: Site, zone_id: str, start: float, end: float, method: str,
                   model: SiteForecastModel | None = None) -> ForecastCheck:
    """Forecasts as the live API would have issued them during the period, against the actual.

    Uses the API's model (``cached_site_model``) on the store's one-minute means, with two
    hours of history before each forecast, exactly like ``forecast.live.forecast_zones``.
    """
    from crowdsafe.forecast.live import HISTORY_MIN
    from crowdsafe.forecast.model import cached_site_model

    rows = store.history("zone_readings", zone_id, "count", start - HISTORY_MIN * STEP_S, end, STEP_S)
    grid, y = resample_minutes([b for b, *_ in rows], [m for _, m, *_ in rows])
    if y.size <= FORECAST_HORIZON_MIN:  # nothing to score: do not fit a model (seconds) for nothing
        return ForecastCheck(FORECAST_HORIZON_MIN, method, [], [], [], [], [])
    model = model or cached_site_model(site, method)
    horizon = FORECAST_HORIZON_MIN if FORECAST_HORIZON_MIN in model.horizons else model.horizons[0]
    k = model.horizons.index(horizon)
    empty = ForecastCheck(horizon, model.method, [], [], [], [], [])
    if y.size <= horizon or zone_id not in model.zones:
        return empty
    idx = np.arange(y.size - horizon)
    target = grid[idx] + horizon * STEP_S
    keep = idx[(target >= start) & (target < end)]
    keep = keep[(keep - keep[0]) % FORECAST_EVERY_MIN == 0] if keep.size else keep
    if keep.size == 0:
        return empty
    pred = model.predict(zone_id, y, grid, keep)
    has_interval = "lo80" in pred
    return ForecastCheck(horizon, model.method, [float(t) for t in grid[keep + horizon]],
                         [float(v) for v in pred["mean"][:, k]],
                         [float(v) for v in pred["lo80"][:, k]] if has_interval else [],
                         [float(v) for v in pred["hi80"][:, k]] if has_interval else [],
                         [float(v) for v in y[keep + horizon]])


def gate_summary(store: Store, site: Site, line_id: str, start: float, end: float,
                 resolution_s: float) -> GateSummary:
    line = next(ln for ln in site.lines if ln.id == line_id)
    rows = store.query("line_readings", line_id, start, end, limit=10_000_000)
    base = {"line_id": line.id, "name": line.name or line.id, "width_m": line.width_m or line.length_m,
            "readings": len(rows)}
    if not rows:
        return GateSummary(**base)
    peak, peak_ts = _first_max(rows, "flow_pmm")
    cum_in = np.cumsum([r["in_count"] for r in rows])
    cum_out = np.cumsum([r["out_count"] for r in rows])
    # Cumulative curves thinned to at most MAX_POINTS (the last point always kept: the totals).
    last = len(rows) - 1
    pick = np.unique(np.r_[np.linspace(0, last, min(len(rows), MAX_POINTS)).astype(int), last])
    return GateSummary(
        **base,
        total_in=float(cum_in[-1]),
        total_out=float(cum_out[-1]),
        peak_flow_pmm=peak,
        peak_flow_ts=peak_ts,
        flow=_series(store, "line_readings", line_id, "flow_pmm", start, end, resolution_s),
        cumulative_ts=[float(rows[i]["ts"]) for i in pick],
        cumulative_in=[float(cum_in[i]) for i in pick],
        cumulative_out=[float(cum_out[i]) for i in pick],
    )


def alert_rows(store: Store, start: float, end: float) -> list[AlertRow]:
    return [AlertRow(a["alert_id"], a["rule"], a["subject"], a["severity"], a["state"], a["raised_ts"],
                     a["acknowledged_ts"], a["acknowledged_by"], a["cleared_ts"], a["message"], a.get("note"))
            for a in queries.alerts_raised_between(store, start, end)]


def staffing_rows(store: Store, site: Site, start: float, end: float) -> tuple[list[StaffRow] | None, str]:
    """The site's policy applied to each zone's measured peak per slot, next to the planned stewards.

    What the policy would have asked for, given what happened: a debrief asks whether the
    stewards planned (``staffing.planned_stewards: {zone: n}`` in the site file) were enough.
    A zone with readings in a slot was open then, so ``min_stewards`` applies however few people
    it held (as on the dashboard); the peak is the readings' upper bound where the policy plans
    from an upper bound (``forecast_bound`` hi80/hi95), else their count.
    """
    policy = site.staffing
    if policy is None:
        return None, "The site file has no staffing policy: no recommendation to compare with."
    planned = dict(policy.planned_stewards)
    book = site.safety.profile_book()
    slot_s = STAFF_SLOT_MIN * 60.0
    out: list[StaffRow] = []
    for zone in site.zones:
        rows = store.query("zone_readings", zone.id, start, end, limit=10_000_000)
        peaks: dict[int, float] = {}
        for row in rows:
            slot = int((row["ts"] - start) // slot_s)
            high = row.get("count_high") if policy.forecast_bound != "mean" else None
            people = float(row["count"] if high is None else max(high, row["count"]))
            peaks[slot] = max(peaks.get(slot, 0.0), people)
        area = zone_area(zone)
        los_profile = book.los_profile(zone.type, zone.los_profile)
        for slot, people in sorted(peaks.items()):
            los = los_profile.classify(people / area) if area > 0 else None
            counted = max(people, policy.open_at_people)  # measured, hence open
            out.append(StaffRow(zone.id, start + slot * slot_s, people,
                                zone_stewards(policy, zone, counted, los)[3], planned.get(zone.id)))
    bound = "count" if policy.forecast_bound == "mean" else "upper bound of the count"
    note = (f"Recommended: the policy applied to each zone's measured peak ({bound}) in each "
            f"{STAFF_SLOT_MIN}-minute slot; a zone with readings counts as open, so min_stewards applies "
            "however few people it held. Planned: staffing.planned_stewards in the site file"
            + ("." if planned else " (not given)."))
    return out, note


def egress_rows(site: Site, zones: list[ZoneSummary]) -> list[EgressRow]:
    by_id = {z.zone_id: z for z in zones}
    out = []
    for zone in site.zones:
        summary = by_id.get(zone.id)
        if summary is None or summary.peak_count is None or summary.peak_count_ts is None:
            continue
        clearance = live_clearance_s(zone, summary.peak_count, site.safety)
        if clearance is not None:
            out.append(EgressRow(zone.id, summary.peak_count, summary.peak_count_ts, clearance,
                                 site.safety.egress_limit_s))
    return out


def _counter_increments(values: list[int], from_zero: bool = False) -> int:
    """Sum of increases of a cumulative counter; a decrease is a restart (its new value counts).

    ``from_zero``: the counter started in the period (no earlier health row), so its first value
    happened in the period too.
    """
    total = values[0] if from_zero and values else 0
    for prev, cur in itertools.pairwise(values):
        total += cur - prev if cur >= prev else cur
    return total


def camera_quality(store: Store, site: Site, start: float, end: float) -> list[CameraQuality]:
    """Uptime (share of the period covered by 'up' health rows), gaps, samples and drops per camera."""
    out = []
    for cam in site.cameras:
        rows = store.query("camera_health", cam.id, start, end, limit=10_000_000)
        started = not store.query("camera_health", cam.id, end=start, limit=1)
        # A camera that first reported inside the period was not running before: that is not an outage.
        run_start = float(rows[0]["ts"]) if started and rows else start
        durations = holds([r["ts"] for r in rows], end)
        up = [(r["ts"], r["ts"] + d) for r, d in zip(rows, durations, strict=True) if r["status"] == "up"]
        merged: list[tuple[float, float]] = []
        for a, b in up:
            if merged and a <= merged[-1][1] + 1e-6:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        gaps, cursor = [], run_start
        for a, b in merged:
            if a > cursor:
                gaps.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < end:
            gaps.append((cursor, end))
        gaps = [(a, b) for a, b in gaps if b - a > 1e-6]
        running = end - run_start
        uptime = 100.0 * sum(b - a for a, b in merged) / running if running > 0 else 0.0
        msgs = [r["message"] or "" for r in rows]
        dropped = [int(m.group(1)) for t in msgs if (m := _DROPPED.search(t))]
        samples = [int(m.group(1)) for t in msgs if (m := _SAMPLES.search(t))]
        out.append(CameraQuality(cam.id, cam.model, len(rows), uptime, merged, gaps,
                                 _counter_increments(samples, started), _counter_increments(dropped, started),
                                 cam.model != "auto" or cam.tuning is not None, cam.tuning,
                                 [(start, run_start)] if run_start > start else []))
    return out


def camera_overlays(view: SiteView, zones: list[ZoneSummary],
                    backgrounds_dir: Path | None) -> list[CameraOverlay]:
    means = {z.zone_id: z.mean_density for z in zones if z.mean_density is not None}
    out = []
    for cam in view.payload["cameras"]:
        size = tuple(cam["image_size"]) if cam["image_size"] else None
        path = backgrounds_dir / f"{cam['id']}.jpg" if backgrounds_dir is not None else None
        out.append(CameraOverlay(cam["id"], size,  # type: ignore[arg-type]
                                 path if path is not None and path.is_file() else None,
                                 dict(cam["zones_in_image"]),
                                 {z: means[z] for z in cam["zones_in_image"] if z in means}))
    return out


def build_report(store: Store, site: Site, start: float, end: float, *, backgrounds_dir: Path | None = None,
                 forecast_method: str | None = None, forecast: bool = True,
                 forecast_model: SiteForecastModel | None = None,
                 forecast_unavailable: str | None = None, signoff: SignOff | None = None,
                 view: SiteView | None = None) -> Report:
    """Everything the debrief shows for [start, end), from the store.

    ``forecast_model``: an already fitted model (the API passes its own, so a report request
    never fits one, which takes seconds); ``forecast_unavailable``: why there is no forecast
    check (printed per zone instead of it).
    """
    if not end > start:
        raise ValueError("the report period must end after it starts")
    resolution = resolution_for(start, end)
    zones = [zone_summary(store, site, z, start, end, resolution) for z in site.zones]
    if forecast and site.zones:
        from crowdsafe.forecast.live import default_method

        method = forecast_method or default_method()
        checked = []
        for z in zones:
            try:
                check = forecast_check(store, site, z.zone_id, start, end, method, forecast_model)
                note = None if check.actual else "too little history in the period to score a forecast"
            except Exception as exc:  # a failed forecast must not lose the rest of the report
                check, note = None, f"forecast unavailable: {exc}"
            checked.append(replace(z, forecast=check, forecast_note=note))
        zones = checked
    elif forecast_unavailable:
        zones = [replace(z, forecast_note=forecast_unavailable) for z in zones]
    gates = [gate_summary(store, site, ln.id, start, end, resolution) for ln in site.lines]
    staffing, staffing_note = staffing_rows(store, site, start, end)
    view = view if view is not None else build_site_view(site)  # the API passes its own: no rebuild
    events = event_rows(store, site, start, end)
    return Report(site_name=site.name, start=start, end=end, resolution_s=resolution, zones=zones,
                  gates=gates, alerts=alert_rows(store, start, end),
                  risk_bands=_bands(site.safety.profile_book().risk), staffing=staffing,
                  staffing_note=staffing_note,
                  egress=egress_rows(site, zones), egress_target_s=site.safety.egress_limit_s,
                  cameras=camera_quality(store, site, start, end),
                  overlays=camera_overlays(view, zones, backgrounds_dir),
                  site_flow_limits=dict(site.safety.specific_flow_pmm), timezone=site.timezone,
                  signoff=signoff or SignOff(), events=events,
                  operator_actions=store.audit_trail(start, end))
