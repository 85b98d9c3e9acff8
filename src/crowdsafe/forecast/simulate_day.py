"""Synthetic event days with known truth, for backtests and tests (no real event data ships).

Why and how: docs/design-notes.md, ``crowdsafe.forecast.simulate_day``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from crowdsafe.config.site import ScheduleEvent, Site
from crowdsafe.forecast.crowdmodel import CrowdParams
from crowdsafe.forecast.schedule import (
    STEP_S,
    EventSpec,
    default_attendance,
    grid_bounds,
    occupancy,
    site_events,
)

DEMO_DATE = date(2026, 6, 1)
COUNTER_NOISE = 0.10
COUNTER_BIAS = 0.03


def demo_schedule(day: date = DEMO_DATE, attendance: int | None = None) -> list[ScheduleEvent]:
    """An evening concert, times in UTC: the schedule used when a site file has none."""
    def at(hour: int, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
    return [ScheduleEvent(name="evening concert", doors_open=at(18, 15), start=at(19, 0), end=at(21, 30),
                          breaks=[(at(20, 0), at(20, 20))], expected_attendance=attendance)]


def with_schedule(site: Site, day: date = DEMO_DATE) -> Site:
    """The site itself if it has a schedule, else a copy with the demo schedule on ``day``."""
    if site.schedule:
        return site
    copy = site.model_copy(update={"schedule": demo_schedule(day, int(default_attendance(site)))})
    copy._base_dir = site._base_dir
    return copy


def shift_schedule(events: Sequence[ScheduleEvent], days: int) -> list[ScheduleEvent]:
    """The same programme ``days`` later: how a multi-day backtest repeats one schedule."""
    delta = timedelta(days=days)
    out = []
    for ev in events:
        update: dict[str, object] = {"start": ev.start + delta,
                                     "breaks": [(a + delta, b + delta) for a, b in ev.breaks]}
        if ev.end is not None:
            update["end"] = ev.end + delta
        if ev.doors_open is not None:
            update["doors_open"] = ev.doors_open + delta
        out.append(ev.model_copy(update=update))
    return out


@dataclass(frozen=True)
class SimulatedDay:
    """One synthetic day: minute grid, true and observed people per zone, and how it was made."""

    site: Site  # with the schedule the day followed
    ts: np.ndarray  # epoch seconds, one per minute
    truth: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    events: list[EventSpec]
    params: list[CrowdParams]
    seed: int

    def readings(self) -> list[dict[str, object]]:
        """Rows for the store's ``zone_readings`` table (observed counts, ±15 % interval)."""
        rows: list[dict[str, object]] = []
        for zone_id, counts in self.observed.items():
            for ts, count in zip(self.ts, counts, strict=True):
                c = float(count)
                rows.append({"zone_id": zone_id, "ts": float(ts), "count": c, "count_low": 0.85 * c,
                             "count_high": 1.15 * c})
        return rows


def simulate_day(site: Site, seed: int = 0, day_index: int = 0,
                 noise: float = COUNTER_NOISE) -> SimulatedDay:
    """One seeded event day at ``site`` (its schedule shifted by ``day_index`` days)."""
    base = with_schedule(site)
    day_site = base.model_copy(update={"schedule": shift_schedule(base.schedule, day_index)})

    events = site_events(day_site)
    rng = np.random.default_rng([seed, day_index])
    params = [ev.params().randomized(rng) for ev in events]
    t0, n = grid_bounds(events)
    truth = occupancy(day_site, events, t0, n, params, rng)
    observed = {}
    for zone_id, series in truth.items():
        bias = rng.lognormal(0.0, COUNTER_BIAS)
        observed[zone_id] = series * bias * rng.lognormal(0.0, noise, series.size)
    ts = t0 + STEP_S * np.arange(n)
    return SimulatedDay(day_site, ts, truth, observed, events, params, seed)


def simulate_days(site: Site, n_days: int, seed: int = 0, first_day: int = 0) -> list[SimulatedDay]:
    return [simulate_day(site, seed, first_day + k) for k in range(n_days)]
