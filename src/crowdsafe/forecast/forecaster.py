"""Live per-zone forecasts: feed readings as they arrive, ask for the next hour at any time.

Readings come at whatever rate the pipeline runs (one a second, or irregular after a camera
drop-out); the models work on one-minute means, so the forecaster buckets readings by minute
(UTC epoch // 60), averages each bucket and carries the last value over gaps of up to
``MAX_GAP_MIN`` minutes. A longer gap means the zone's recent past is unknown: the forecast
then starts from the readings after the gap only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from crowdsafe.forecast.model import SiteForecastModel
from crowdsafe.forecast.schedule import STEP_S, event_sources, sources_between

MAX_GAP_MIN = 10
KEEP_MIN = 240  # history kept per zone: the longest lag used is 45 min, the rest is for charts


@dataclass(frozen=True)
class Forecast:
    """Occupancy forecast of one zone: people at ``issued_ts + horizons[k]`` minutes."""

    zone_id: str
    issued_ts: float  # UTC epoch s of the last one-minute bucket the forecast starts from
    horizons: tuple[int, ...]  # minutes ahead
    mean: tuple[float, ...]
    lo80: tuple[float, ...]
    hi80: tuple[float, ...]
    lo95: tuple[float, ...]
    hi95: tuple[float, ...]
    method: str = "gbm"
    last_count: float | None = None
    lo90: tuple[float, ...] = ()
    hi90: tuple[float, ...] = ()
    #: What the model learned from: "simulated" (synthetic event days of the site's schedule) or
    #: "history" (the site's own stored days). Shown so no one mistakes a simulated crowd for one
    #: the site has seen.
    trained_on: str = "simulated"
    #: Minutes of this zone's own readings the forecast started from.
    history_min: int | None = None
    #: The schedule events this forecast's span includes and what each one's expected crowd comes
    #: from (``series.EventSource.as_dict``: ``history`` of the series, ``attendance`` or ``none``).
    events: tuple[dict[str, object], ...] = ()

    def target_ts(self) -> list[float]:
        return [self.issued_ts + 60.0 * h for h in self.horizons]

    def bound(self, which: str) -> tuple[float, ...]:
        """``mean``, ``hi80``, ``hi90`` or ``hi95`` (any field holding one value per horizon)."""
        names = ("mean", "lo80", "hi80", "lo90", "hi90", "lo95", "hi95")
        if which not in names or len(getattr(self, which)) != len(self.horizons):
            raise ValueError(f"no forecast bound {which!r}; use mean, lo80, hi80, lo95 or hi95")
        return getattr(self, which)

    def as_dict(self) -> dict[str, object]:
        return {"zone_id": self.zone_id, "issued_ts": self.issued_ts, "method": self.method,
                "trained_on": self.trained_on, "history_min": self.history_min,
                "last_count": self.last_count, "horizons_min": list(self.horizons),
                "events": list(self.events),
                "target_ts": self.target_ts(),
                **{k: [round(v, 2) for v in getattr(self, k)]
                   for k in ("mean", "lo80", "hi80", "lo90", "hi90", "lo95", "hi95") if getattr(self, k)}}


def resample_minutes(ts: Sequence[float], counts: Sequence[float],
                     max_gap_min: int = MAX_GAP_MIN) -> tuple[np.ndarray, np.ndarray]:
    """(minute start times, mean count per minute), gaps filled forward up to ``max_gap_min``.

    Only the run of minutes after the last longer gap is returned: older values cannot be
    trusted as the recent past of the zone.
    """
    t = np.asarray(ts, dtype=float)
    c = np.asarray(counts, dtype=float)
    ok = np.isfinite(t) & np.isfinite(c)
    t, c = t[ok], c[ok]
    if t.size == 0:
        return np.empty(0), np.empty(0)
    bucket = np.floor(t / STEP_S).astype(np.int64)
    uniq, inv = np.unique(bucket, return_inverse=True)
    means = np.bincount(inv, weights=c) / np.bincount(inv)
    gaps = np.flatnonzero(np.diff(uniq) > max_gap_min + 1)
    if gaps.size:
        uniq, means = uniq[gaps[-1] + 1:], means[gaps[-1] + 1:]
    grid = np.arange(uniq[0], uniq[-1] + 1)
    idx = np.searchsorted(uniq, grid, side="right") - 1
    return grid * STEP_S, means[idx]


class ZoneForecaster:
    """Forecasts for one zone from a fitted site model; ``update`` with readings, then ``forecast``."""

    def __init__(self, model: SiteForecastModel, zone_id: str) -> None:
        if zone_id not in model.zones:
            raise KeyError(f"zone {zone_id!r} is not in the forecast model; zones: {', '.join(model.zones)}")
        self.model = model
        self.zone_id = zone_id
        self._ts: list[float] = []
        self._counts: list[float] = []

    def update(self, ts: Iterable[float], counts: Iterable[float]) -> None:
        """Add readings (any order, any rate); older than ``KEEP_MIN`` before the newest is dropped."""
        self._ts.extend(float(t) for t in ts)
        self._counts.extend(float(c) for c in counts)
        if self._ts:
            cutoff = max(self._ts) - KEEP_MIN * 60.0
            kept = [(t, c) for t, c in zip(self._ts, self._counts, strict=True) if t >= cutoff]
            self._ts, self._counts = [t for t, _ in kept], [c for _, c in kept]

    def forecast(self, ts: Sequence[float] | None = None, counts: Sequence[float] | None = None) -> Forecast:
        """Forecast from the readings given (or, without arguments, those fed by ``update``)."""
        if ts is None or counts is None:
            ts, counts = self._ts, self._counts
        grid, y = resample_minutes(ts, counts)
        if y.size == 0:
            raise ValueError(f"zone {self.zone_id}: no readings to forecast from")
        pred = self.model.predict(self.zone_id, y, grid, np.asarray([y.size - 1]))
        row = {k: tuple(float(v) for v in a[0]) for k, a in pred.items()}
        events = self._events(float(grid[-1]))
        return Forecast(self.zone_id, float(grid[-1]), self.model.horizons, row["mean"], row["lo80"],
                        row["hi80"], row["lo95"], row["hi95"], self.model.method, float(y[-1]),
                        row.get("lo90", ()), row.get("hi90", ()), self.model.trained_on, int(y.size),
                        events)

    def _events(self, issued: float) -> tuple[dict[str, object], ...]:
        """The model's events whose span overlaps this forecast's, with their sources."""
        model = self.model
        sources = model.event_sources or event_sources(model.events, None, model.schedule_aware)
        end = issued + 60.0 * max(model.horizons)
        return tuple(s.as_dict() for s in sources_between(sources, model.events, issued, end))


def forecast_site(model: SiteForecastModel, readings: Iterable[dict[str, object]]) -> dict[str, Forecast]:
    """Forecasts for every zone with readings, from store rows (zone_id, ts, count)."""
    by_zone: dict[str, tuple[list[float], list[float]]] = {}
    for row in readings:
        zone_id = str(row["zone_id"])
        if zone_id in model.zones:
            ts_list, c_list = by_zone.setdefault(zone_id, ([], []))
            ts_list.append(float(row["ts"]))  # type: ignore[arg-type]
            c_list.append(float(row["count"]))  # type: ignore[arg-type]
    return {z: ZoneForecaster(model, z).forecast(t, c) for z, (t, c) in by_zone.items()}
