"""Recurring events learned from the site's own stored occurrences: the next one is expected to
look like the last ones did, zone by zone.

Why: the arrival curve (``crowdmodel``) is a documented guess shaped by one number, the expected
attendance; a series that has happened at this site before (the home match, the fireworks) left
its real shape in the store: when each zone filled, how full, how fast it emptied. So an event
whose ``series`` has stored occurrences is expected to repeat their mean per-zone curve
(aligned on the start time, scaled by the ratio of expected attendances when both are known);
one without falls back to the attendance-scaled arrival curve; with no event, nothing changes.
Every forecast names the events it includes and where each came from (``EventSource``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.schedule import (
    STEP_S,
    EventSource,
    EventSpec,
    SiteProfile,
    ambient,
    event_sources,
    event_span,
    grid_bounds,
    occupancy,
    site_events,
    sources_between,
)
from crowdsafe.store.store import Store

if TYPE_CHECKING:
    from crowdsafe.forecast.model import SiteForecastModel

#: Share of an occurrence's minutes a zone must have readings for to teach its curve.
MIN_COVERAGE = 0.8


@dataclass(frozen=True)
class SeriesCurve:
    """Mean people per zone, minute by minute relative to the start, over stored occurrences."""

    series: str
    offsets_s: np.ndarray  # seconds after the start, one per minute
    zones: dict[str, np.ndarray]  # zone id -> mean people (NaN where no occurrence covered it)
    occurrences: int
    attendance: float | None  # mean expected attendance of the occurrences, if all had one

    def at(self, zone_id: str, rel_s: np.ndarray) -> np.ndarray:
        """People at seconds after the start (NaN outside the learned span or the zone)."""
        curve = self.zones.get(zone_id)
        rel = np.asarray(rel_s, dtype=float)
        if curve is None:
            return np.full(rel.shape, np.nan)
        out = np.interp(rel, self.offsets_s, curve, left=np.nan, right=np.nan)
        return np.where((rel >= self.offsets_s[0]) & (rel <= self.offsets_s[-1]), out, np.nan)


def _zone_minutes(store: Store, zone_id: str, t0: float, t1: float) -> np.ndarray:
    """Mean count per minute on [t0, t1) (NaN where none; gaps of up to 10 min carried, as live)."""
    from crowdsafe.forecast.history import _bridge, _minutes

    rows = store.history("zone_readings", zone_id, "count", t0, t1, STEP_S)
    minute, mean = _minutes(rows)
    lo, hi = int(np.floor(t0 / STEP_S)), int(np.ceil(t1 / STEP_S))
    if minute.size == 0:
        return np.full(hi - lo, np.nan)
    return _bridge(minute, mean, lo, hi)


def learn_series(store: Store, site: Site, now: float,
                 events: Sequence[EventSpec] | None = None) -> dict[str, SeriesCurve]:
    """Each series' mean curve over its occurrences that were over (end + tail) by ``now`` and
    whose readings the store holds; a zone counts for an occurrence where it has readings for at
    least ``MIN_COVERAGE`` of the minutes."""
    events = list(events) if events is not None else site_events(site)
    by_series: dict[str, list[EventSpec]] = {}
    for ev in events:
        if ev.series and event_span(ev)[1] <= now:
            by_series.setdefault(ev.series, []).append(ev)
    out: dict[str, SeriesCurve] = {}
    for name, past in by_series.items():
        before = max(ev.start_ts - event_span(ev)[0] for ev in past)
        after = max(event_span(ev)[1] - ev.start_ts for ev in past)
        offsets = np.arange(-np.ceil(before / STEP_S), np.ceil(after / STEP_S) + 1) * STEP_S
        sums = {z.id: np.zeros(offsets.size) for z in site.zones}
        counts = {z.id: np.zeros(offsets.size) for z in site.zones}
        used = 0
        for ev in past:
            t0, t1 = event_span(ev)
            any_zone = False
            for zone in site.zones:
                y = _zone_minutes(store, zone.id, t0, t1)
                if np.mean(np.isfinite(y)) < MIN_COVERAGE:
                    continue
                rel = np.floor(t0 / STEP_S) * STEP_S + STEP_S * np.arange(y.size) - ev.start_ts
                vals = np.interp(offsets, rel, np.where(np.isfinite(y), y, 0.0), left=np.nan, right=np.nan)
                ok_src = np.interp(offsets, rel, np.isfinite(y).astype(float), left=0.0, right=0.0) > 0.5
                ok = ok_src & np.isfinite(vals)
                sums[zone.id][ok] += vals[ok]
                counts[zone.id][ok] += 1
                any_zone = True
            used += int(any_zone)
        if not used:
            continue
        zones = {z: np.where(counts[z] > 0, sums[z] / np.maximum(counts[z], 1), np.nan)
                 for z in sums if np.any(counts[z] > 0)}
        atts = [ev.attendance for ev in past] if all(ev.attendance_given for ev in past) else []
        out[name] = SeriesCurve(name, offsets, zones, used,
                                float(np.mean(atts)) if atts else None)
    return out


def learned_counts(events: Sequence[EventSpec], curves: dict[str, SeriesCurve], now: float) -> dict[int, int]:
    """Index of each upcoming event of a learned series -> its curve's stored occurrences."""
    out = {}
    for k, ev in enumerate(events):
        curve = _learned_for(ev, curves, now)
        if curve is not None:
            out[k] = curve.occurrences
    return out


def _learned_for(event: EventSpec, curves: dict[str, SeriesCurve], now: float) -> SeriesCurve | None:
    """The curve an upcoming (or current) event repeats; None for past events and new series."""
    if event.series is None or event.series not in curves or event_span(event)[1] <= now:
        return None
    return curves[event.series]


def learned_profile(site: Site, events: Sequence[EventSpec], curves: dict[str, SeriesCurve],
                    now: float) -> SiteProfile | None:
    """``site_profile`` with every upcoming event of a learned series replaced by its series'
    mean curve (above the ambient crowd, scaled by the attendance ratio when both are known)."""
    events = list(events)
    if not events:
        return None
    t0, n = grid_bounds(events)
    learned = {k: _learned_for(ev, curves, now) for k, ev in enumerate(events)}
    occ = occupancy(site, [ev for k, ev in enumerate(events) if learned[k] is None], t0, n)
    ts = t0 + STEP_S * np.arange(n)
    for k, ev in enumerate(events):
        curve = learned[k]
        if curve is None:
            continue
        scale = (ev.attendance / curve.attendance
                 if ev.attendance_given and curve.attendance else 1.0)
        for zone in site.zones:
            vals = curve.at(zone.id, ts - ev.start_ts)
            extra = np.maximum(vals - ambient(zone), 0.0) * scale
            occ[zone.id] += np.where(np.isfinite(extra), extra, 0.0)
    return SiteProfile(t0, occ, events)


def expected_counts(site: Site, store: Store, ts: Sequence[float] | np.ndarray, now: float,
                    ) -> tuple[dict[str, np.ndarray], list[EventSource]]:
    """People expected per zone at ``ts`` (epoch s, any distance ahead) from the schedule as known
    at ``now``: the learned series curves, else the arrival curves; and the events included.

    This is the day-ahead view (planning stewards the day before); the 5-60 minute forecasts
    start from the readings and use the same profile as a covariate.
    """
    t = np.asarray(ts, dtype=float)
    events = site_events(site)
    curves = learn_series(store, site, now, events)
    profile = learned_profile(site, events, curves, now)
    if profile is None:
        return {z.id: np.full(t.shape, ambient(z)) for z in site.zones}, []
    sources = sources_between(event_sources(events, learned_counts(events, curves, now)), events,
                              float(t.min()), float(t.max()))
    return {z.id: profile.at(z.id, t) for z in site.zones}, sources


def with_series(model: SiteForecastModel, site: Site, store: Store | None, now: float) -> SiteForecastModel:
    """``model`` with the series learned from ``store`` as of ``now``: a copy whose profile repeats
    each upcoming event's series curve, and whose ``event_sources`` say where each event came
    from. A model that ignores the schedule (``persistence``) becomes ``profile`` once an upcoming
    event has a learned series: its stored occurrences are better than the last reading alone."""
    from crowdsafe.forecast.model import fit_site_model

    events = site_events(site)
    curves = learn_series(store, site, now, events) if store is not None and events else {}
    upcoming = any(_learned_for(ev, curves, now) is not None for ev in events)
    if upcoming:
        if model.method == "persistence":
            model = fit_site_model(site, "profile")
        model = replace(model, profile=learned_profile(site, events, curves, now), schedule_aware=True)
    return replace(model, event_sources=event_sources(events, learned_counts(events, curves, now),
                                                      model.schedule_aware))
