"""The site's event schedule as numbers a forecaster can use: a profile per zone, and clocks.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.schedule``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import shapely

from crowdsafe.config.site import ScheduleEvent, Site, Zone
from crowdsafe.forecast.crowdmodel import CrowdParams, EventTimes, event_occupancy

STEP_S = 60.0
#: Grid margins around the day's events: before the first doors, after the last end.
LEAD_MIN, TAIL_MIN = 60.0, 75.0
#: People in a zone with no event (passers-by, staff) by zone type, per 100 m².
AMBIENT_PER_100M2 = {"walkway": 0.6, "queue": 0.2, "standing": 0.1}
CLOCK_CLIP_MIN = 240.0
CLOCK_NAMES = ("since_doors", "since_start", "since_break_start", "since_break_end", "since_end")


@dataclass(frozen=True)
class EventSpec:
    """One schedule event in epoch seconds, with the zones it draws people to."""

    name: str
    doors_ts: float
    start_ts: float
    end_ts: float
    breaks: tuple[tuple[float, float], ...]
    attendance: float
    zones: tuple[str, ...] | None
    arrival_mean_min: float
    egress_min: float
    series: str | None = None
    #: Whether ``attendance`` is the schedule's own expected attendance (else the site default).
    attendance_given: bool = True

    @classmethod
    def from_config(cls, event: ScheduleEvent, default_attendance: float) -> EventSpec:
        start = ScheduleEvent.epoch(event.start)
        end = ScheduleEvent.epoch(event.end) if event.end is not None else start + 2 * 3600.0
        doors = ScheduleEvent.epoch(event.doors_open) if event.doors_open is not None else start - 3600.0
        return cls(event.name, doors, start, end,
                   tuple((ScheduleEvent.epoch(a), ScheduleEvent.epoch(b)) for a, b in event.breaks),
                   float(event.expected_attendance or default_attendance),
                   tuple(event.zones) if event.zones is not None else None,
                   event.arrival_mean_min, event.egress_min, event.series,
                   event.expected_attendance is not None)

    def params(self) -> CrowdParams:
        return CrowdParams(attendance=self.attendance, arrival_mean_min=self.arrival_mean_min,
                           egress_min=self.egress_min)


def zone_area(zone: Zone) -> float:
    return float(shapely.Polygon(zone.polygon).area)


def default_attendance(site: Site) -> float:
    """Without an expected attendance, plan for the standing zones at 95 % of capacity."""
    caps = [z.capacity for z in site.zones if z.type == "standing" and z.capacity]
    return 0.95 * sum(caps) if caps else 500.0


def site_events(site: Site) -> list[EventSpec]:
    base = default_attendance(site)
    return [EventSpec.from_config(ev, base) for ev in site.schedule]


def zone_shares(zones: Sequence[Zone], allowed: tuple[str, ...] | None) -> dict[str, float]:
    """Each zone's share of its type's people: by capacity, or by area if any capacity is missing."""
    shares: dict[str, float] = {}
    for ztype in ("queue", "walkway", "standing"):
        group = [z for z in zones if z.type == ztype and (allowed is None or z.id in allowed)]
        if not group:
            continue
        use_cap = all(z.capacity for z in group)
        weights = [float(z.capacity) if use_cap else zone_area(z) for z in group]  # type: ignore[arg-type]
        total = sum(weights) or 1.0
        shares.update({z.id: w / total for z, w in zip(group, weights, strict=True)})
    return shares


@dataclass
class SiteProfile:
    """Expected occupancy per zone on a one-minute grid starting at ``t0`` (epoch s)."""

    t0: float
    occupancy: dict[str, np.ndarray]
    events: list[EventSpec] = field(default_factory=list)

    def at(self, zone_id: str, ts: np.ndarray | float) -> np.ndarray:
        """Profile values at epoch times; the ends of the grid extend flat (ambient crowd)."""
        series = self.occupancy[zone_id]
        idx = (np.asarray(ts, dtype=float) - self.t0) / STEP_S
        return np.interp(idx, np.arange(series.size), series)


def grid_bounds(events: Sequence[EventSpec]) -> tuple[float, int]:
    """(t0, minutes) covering every event with margins, t0 on a whole minute."""
    t0 = min(e.doors_ts for e in events) - LEAD_MIN * 60.0
    t0 = float(np.floor(t0 / STEP_S) * STEP_S)
    t1 = max(e.end_ts for e in events) + TAIL_MIN * 60.0
    return t0, int(np.ceil((t1 - t0) / STEP_S))


def ambient(zone: Zone) -> float:
    return AMBIENT_PER_100M2.get(zone.type, 0.0) * zone_area(zone) / 100.0


def occupancy(site: Site, events: Sequence[EventSpec], t0: float, n_minutes: int,
              params: Sequence[CrowdParams] | None = None,
              rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """People per zone per minute from all events: expected (rng None) or one random day."""
    out = {z.id: np.zeros(n_minutes) for z in site.zones}
    for k, event in enumerate(events):
        p = params[k] if params is not None else event.params()
        to_min = lambda ts: (ts - t0) / 60.0  # noqa: E731
        times = EventTimes(to_min(event.doors_ts), to_min(event.start_ts), to_min(event.end_ts),
                           tuple((to_min(a), to_min(b)) for a, b in event.breaks))
        by_type = event_occupancy(n_minutes, times, p, rng)
        shares = zone_shares(site.zones, event.zones)
        for zone in site.zones:
            if zone.id in shares:
                out[zone.id] += by_type[zone.type] * shares[zone.id]
    for zone in site.zones:
        base = ambient(zone)
        out[zone.id] += rng.poisson(base, n_minutes) if rng is not None else base
    return out


def site_profile(site: Site, events: Sequence[EventSpec] | None = None) -> SiteProfile | None:
    """The expected day for the site's schedule; None when the site has no schedule."""
    events = list(events) if events is not None else site_events(site)
    if not events:
        return None
    t0, n = grid_bounds(events)
    return SiteProfile(t0, occupancy(site, events, t0, n), events)


def schedule_clock(events: Sequence[EventSpec], ts: np.ndarray) -> np.ndarray:
    """Minutes since doors, start, break start, break end and end of the nearest event.

    Shape (len(ts), 5), clipped to ±4 h so far-away events look alike. "Nearest" is the event
    whose span (doors to end) is closest to the time; with no break, the break clocks read the
    start clock, which keeps them monotone and meaningful for a tree model.
    """
    ts = np.asarray(ts, dtype=float)
    out = np.full((ts.size, len(CLOCK_NAMES)), CLOCK_CLIP_MIN)
    if not events:
        return out
    dist = np.stack([np.maximum(np.maximum(e.doors_ts - ts, ts - e.end_ts), 0.0) for e in events])
    nearest = np.argmin(dist, axis=0)
    for k, event in enumerate(events):
        sel = nearest == k
        t = ts[sel]
        brk = _current_break(event, t)
        cols = [t - event.doors_ts, t - event.start_ts, t - brk[:, 0], t - brk[:, 1], t - event.end_ts]
        out[sel] = np.stack(cols, axis=1) / 60.0
    return np.clip(out, -CLOCK_CLIP_MIN, CLOCK_CLIP_MIN)


def _current_break(event: EventSpec, t: np.ndarray) -> np.ndarray:
    """(start, end) of the break that is current or next at each time; the last one after it."""
    if not event.breaks:
        return np.tile([event.start_ts, event.start_ts], (t.size, 1))
    brks = np.asarray(event.breaks)
    idx = np.searchsorted(brks[:, 1], t, side="right")
    return brks[np.clip(idx, 0, len(brks) - 1)]


@dataclass(frozen=True)
class EventSource:
    """One event a forecast includes, and what its expected crowd comes from: ``history`` (the
    series' stored occurrences, ``occurrences`` of them), ``attendance`` (the arrival curve scaled
    by the expected attendance: the schedule's, or the site default when ``attendance_given`` is
    false) or ``none`` (the forecast method does not use the schedule)."""

    event: str
    series: str | None
    source: str
    occurrences: int
    attendance: float | None
    attendance_given: bool
    start_ts: float
    end_ts: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def event_span(event: EventSpec) -> tuple[float, float]:
    """Epoch seconds an event shapes the crowd over: an hour before the doors to 75 min after the end."""
    return event.doors_ts - LEAD_MIN * 60.0, event.end_ts + TAIL_MIN * 60.0


def event_sources(events: Sequence[EventSpec], learned: dict[int, int] | None = None,
                  schedule_aware: bool = True) -> list[EventSource]:
    """What each event's expected crowd comes from (see ``EventSource``); ``learned``: index of
    an event -> stored occurrences of its series it repeats (``series.with_series``)."""
    learned = learned or {}
    out = []
    for k, ev in enumerate(events):
        n = learned.get(k, 0)
        source = "none" if not schedule_aware else "history" if n else "attendance"
        out.append(EventSource(ev.name, ev.series, source, n, ev.attendance, ev.attendance_given,
                               ev.start_ts, ev.end_ts))
    return out


def sources_between(sources: Sequence[EventSource], events: Sequence[EventSpec], t0: float,
                    t1: float) -> list[EventSource]:
    """The events whose span (doors - lead .. end + tail) overlaps [t0, t1]."""
    return [s for s, ev in zip(sources, events, strict=True)
            if event_span(ev)[0] <= t1 and event_span(ev)[1] >= t0]
