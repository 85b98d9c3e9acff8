"""The site's own stored days as training data: the forecaster learns from what its cameras counted.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.history``."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.forecaster import MAX_GAP_MIN
from crowdsafe.forecast.model import SiteForecastModel, fit_site_model
from crowdsafe.forecast.schedule import STEP_S, EventSpec, site_events
from crowdsafe.store.store import Store

#: A day with fewer common minutes than this teaches nothing about a day's shape.
MIN_DAY_MINUTES = 120
#: Days needed before the live forecaster trusts history: some to train on, one to calibrate on.
MIN_HISTORY_DAYS = 3
DAY_S = 86_400.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredDay:
    """One day of a site's readings as the forecast models read days (see ``fit_site_model``)."""

    ts: np.ndarray  # minute start times, epoch seconds
    observed: dict[str, np.ndarray]  # zone id -> mean count per minute, same length as ts
    events: list[EventSpec]

    @property
    def minutes(self) -> int:
        return int(self.ts.size)


def _minutes(rows: Sequence[tuple[float, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(minute index, mean) of the minutes with readings."""
    if not rows:
        return np.empty(0, np.int64), np.empty(0)
    t = np.asarray([r[0] for r in rows], float)
    c = np.asarray([r[1] for r in rows], float)
    ok = np.isfinite(t) & np.isfinite(c)
    return np.floor(t[ok] / STEP_S).astype(np.int64), c[ok]


def _bridge(minute: np.ndarray, mean: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Values on minutes lo..hi-1: readings, and across a gap of at most ``MAX_GAP_MIN`` minutes
    between two readings the earlier one carried forward (as live); NaN elsewhere, so a day
    ends at its last reading."""
    grid = np.arange(lo, hi)
    prev = np.searchsorted(minute, grid, side="right") - 1
    nxt = np.searchsorted(minute, grid, side="left")
    has_prev, has_next = prev >= 0, nxt < minute.size
    p_min = minute[np.clip(prev, 0, None)]
    n_min = minute[np.clip(nxt, 0, minute.size - 1)]
    keep = has_prev & has_next & (n_min - p_min <= MAX_GAP_MIN + 1)
    out = np.full(grid.size, np.nan)
    out[keep] = mean[prev[keep]]
    return out


def stored_days(store: Store, site: Site, *, before: float | None = None,
                 min_minutes: int = MIN_DAY_MINUTES) -> list[StoredDay]:
    """The site's stored days before ``before`` (default: all), oldest first.

    A "day" is a run of minutes in which every zone has a (bridged) reading: an evening event
    that runs past midnight stays one day; a site counted around the clock is cut at UTC
    midnight. Runs shorter than ``min_minutes`` are left out. The schedule rides along.
    """
    end = float(before) if before is not None else 4e9
    series = {z.id: _minutes(store.history("zone_readings", z.id, "count", 0.0, end, STEP_S))
              for z in site.zones}
    if not series or any(m.size == 0 for m, _ in series.values()):
        return []
    events = site_events(site)
    lo = min(int(m[0]) for m, _ in series.values())
    hi = max(int(m[-1]) for m, _ in series.values()) + 1
    grid = {z: _bridge(m, c, lo, hi) for z, (m, c) in series.items()}
    complete = np.all(np.isfinite(np.stack(list(grid.values()))), axis=0)
    per_day = int(DAY_S // STEP_S)
    days: list[StoredDay] = []
    for a, b in _runs(complete):
        cuts = [a, *range((lo + a) // per_day * per_day + per_day - lo, b, per_day), b] if b - a > per_day \
            else [a, b]
        for x, y in itertools.pairwise(cuts):
            if y - x >= min_minutes:
                days.append(StoredDay((lo + np.arange(x, y)) * STEP_S, {z: v[x:y] for z, v in grid.items()},
                                      events))
    return days


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


@dataclass(frozen=True)
class ScoredBlock:
    """One zone of one day forecast at every ``every``-th minute: (origin x horizon) arrays."""

    horizons: list[int]
    errors: np.ndarray  # |forecast - truth|
    persistence: np.ndarray  # |last reading - truth|, the reference
    hits: np.ndarray | None  # truth inside the 80 % interval; None for a model without one


def score_days(model: SiteForecastModel, days: Sequence[StoredDay], every: int = 5) -> list[ScoredBlock]:
    """``model``'s forecasts over all zones, origins and horizons of ``days`` against what followed."""
    h = np.asarray(model.horizons)
    blocks = []
    for day in days:
        for zone_id, y in day.observed.items():
            origins = np.arange(1, y.size - int(h.max()), every)
            if zone_id not in model.zones or origins.size == 0:
                continue
            pred = model.predict(zone_id, y, day.ts, origins)
            truth = y[origins[:, None] + h[None, :]]
            hits = (pred["lo80"] <= truth) & (truth <= pred["hi80"]) if "lo80" in pred else None
            blocks.append(ScoredBlock([int(hk) for hk in h], np.abs(pred["mean"] - truth),
                                      np.abs(y[origins][:, None] - truth), hits))
    return blocks


def held_out_mae(model: SiteForecastModel, days: Sequence[StoredDay], every: int = 5) -> float:
    """Mean absolute error of ``model`` over all zones, origins and horizons of ``days``."""
    errors = [b.errors.ravel() for b in score_days(model, days, every)]
    return float(np.mean(np.concatenate(errors))) if errors else math.nan


def fit_history_model(store: Store, site: Site, *, min_days: int = MIN_HISTORY_DAYS,
                      seed: int = 1000) -> SiteForecastModel | None:
    """``fit_history_days`` on every stored day of the site."""
    return fit_history_days(site, stored_days(store, site), min_days=min_days, seed=seed)


def fit_history_days(site: Site, days: Sequence[StoredDay], *, min_days: int = MIN_HISTORY_DAYS,
                     seed: int = 1000) -> SiteForecastModel | None:
    """``gbm`` trained on ``days`` (oldest first) and calibrated on the most recent of them, if
    it beats persistence there; None otherwise, or with fewer than ``min_days`` usable days
    (the caller then falls back, and says so).

    The newest quarter of the days (at least one) is held out: it calibrates the intervals and
    decides whether the model is worth using. Those days are the most like tomorrow and the
    model never trained on them, so both the coverage and the comparison are honest, and a
    model trained on too little, or on days unlike the latest, is not used.
    """
    if len(days) < max(min_days, 2):
        log.info("forecast: %d stored day(s) of site %s; learning from history needs %d",
                 len(days), site.name, max(min_days, 2))
        return None
    calib = max(1, math.ceil(len(days) / 4))
    model = fit_site_model(site, "gbm", train_days=len(days) - calib, calib_days=calib, seed=seed,
                           history=days)
    held_out = days[-calib:]
    mae = held_out_mae(model, held_out)
    reference = held_out_mae(fit_site_model(site, "persistence"), held_out)
    model.history_days = len(days)
    model.history_minutes = sum(d.minutes for d in days)
    if not mae < reference:
        log.info("forecast: the model trained on %d stored days of site %s (MAE %.2f on the latest %d) "
                 "does not beat persistence (%.2f); not used", len(days), site.name, mae, calib, reference)
        return None
    log.info("forecast: learned from %d stored days of site %s: MAE %.2f on the latest %d, "
             "persistence %.2f", len(days), site.name, mae, calib, reference)
    return model
