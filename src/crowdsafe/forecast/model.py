"""Point forecasters and the conformal intervals around them, fitted per site on event days.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.model``."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.errors import ForecastDependencyError
from crowdsafe.forecast.features import HORIZONS_MIN, ZoneInfo, features, profile_ratio
from crowdsafe.forecast.schedule import EventSpec, SiteProfile, site_events, site_profile

METHODS: tuple[str, ...] = ("naive", "profile", "gbm", "ets", "persistence")
#: Fewest observed h-minute changes for their own empirical quantiles; with fewer, the changes
#: over the longest lag that has enough are scaled by h / lag: crowds arrive and leave in trends,
#: which grow linearly (sqrt, the random walk's growth, covered 52-74 % on simulated event days).
MIN_CHANGES = 10
#: Interval levels; Forecast carries lo/hi for each (90 %: the level the coverage goal names).
LEVELS = (0.80, 0.90, 0.95)
#: Forecasts (and bounds) are clipped to [0, CLIP_FACTOR × capacity]: above licensed capacity is
#: possible and is what an operator must see, so the limit only stops runaway extrapolation. (At
#: 1.2 × capacity the 95 % bound was cut below real over-capacity days: 84 % coverage in a full
#: standing zone in the backtest.)
CLIP_FACTOR = 2.0
MIN_HISTORY_MIN = 1


def require_sklearn() -> Any:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError as exc:
        raise ForecastDependencyError(
            "the 'gbm' forecast needs scikit-learn: pip install 'crowdsafe[forecast]' "
            "(or use --method profile, numpy only)") from exc
    return HistGradientBoostingRegressor


def zone_infos(site: Site, profile: SiteProfile | None) -> dict[str, ZoneInfo]:
    """Scale = capacity, else the profile's peak, else 100 people; clip only where capacity is known."""
    infos = {}
    for zone in site.zones:
        peak = float(profile.occupancy[zone.id].max()) if profile is not None else 0.0
        scale = float(zone.capacity) if zone.capacity else max(peak, 10.0) if profile is not None else 100.0
        clip = CLIP_FACTOR * zone.capacity if zone.capacity else None
        infos[zone.id] = ZoneInfo(zone.id, zone.type, scale, clip)
    return infos


def local_scale(mean: np.ndarray, level: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """How wide an interval should be here: counter noise grows with the count, model error
    with the change forecast; a floor of 2 % of the zone's scale keeps empty zones honest."""
    return 0.02 * zone.scale + 0.12 * np.maximum(mean, 0.0) + 0.5 * np.abs(mean - level)


#: Fewest calibration scores per horizon for a zone to get its own quantiles (else the pooled ones).
MIN_ZONE_SCORES = 200


def _quantiles(horizons: Sequence[int], h_col: np.ndarray, scores: np.ndarray) -> dict[float, np.ndarray]:
    """prob -> per-horizon split-conformal quantile of ``scores``."""
    probs = sorted({round(p, 6) for lvl in LEVELS for p in ((1 - lvl) / 2, (1 + lvl) / 2)})
    out: dict[float, np.ndarray] = {}
    for p in probs:
        qs = []
        for h in horizons:
            s = np.sort(scores[h_col == h])
            if s.size == 0:
                qs.append(np.nan)
                continue
            # Finite-sample split-conformal rank: ceil((n+1)p) for the upper, floor for the lower.
            rank = math.ceil((s.size + 1) * p) if p > 0.5 else math.floor((s.size + 1) * p)
            qs.append(s[int(np.clip(rank - 1, 0, s.size - 1))])
        out[p] = np.asarray(qs)
    return out


@dataclass
class Conformal:
    """Per-horizon quantiles of residual / local scale, from calibration days.

    Quantiles are per zone where the zone has enough calibration scores (Mondrian conformal):
    pooled over zones, a standing area whose count swings in the break got intervals sized for
    a walkway, and its 95 % interval covered only 84 % of show-time counts in the backtest.
    """

    horizons: tuple[int, ...]
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)  # prob -> per horizon, pooled
    by_zone: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, horizons: Sequence[int], h_col: np.ndarray, scores: np.ndarray,
            zone_col: np.ndarray | None = None, min_per_zone: int = MIN_ZONE_SCORES) -> Conformal:
        out = cls(tuple(horizons), _quantiles(horizons, h_col, scores))
        if zone_col is not None:
            for zone_id in np.unique(zone_col):
                sel = zone_col == zone_id
                if min(int(np.sum(h_col[sel] == h)) for h in horizons) >= min_per_zone:
                    out.by_zone[str(zone_id)] = _quantiles(horizons, h_col[sel], scores[sel])
        return out

    def bounds(self, mean: np.ndarray, scale: np.ndarray, level: float,
               zone_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self.by_zone.get(zone_id, self.quantiles) if zone_id is not None else self.quantiles
        lo = mean + scale * q[round((1 - level) / 2, 6)]
        hi = mean + scale * q[round((1 + level) / 2, 6)]
        return lo, hi


@dataclass
class SiteForecastModel:
    """A fitted forecaster for every zone of one site: point model + conformal intervals."""

    method: str
    horizons: tuple[int, ...]
    zones: dict[str, ZoneInfo]
    profile: SiteProfile | None
    events: list[EventSpec]
    estimator: Any = None
    conformal: Conformal | None = None
    schedule_aware: bool = True
    #: "history" (the site's stored days), "simulated" (synthetic days only), "schedule" (the
    #: schedule's arrival curve, untrained; intervals calibrated on simulated days) or "none"
    #: (persistence: nothing fitted). See ``Forecast.trained_on``.
    trained_on: str = "simulated"
    #: Stored days and minutes of readings it learned from (``trained_on == "history"``).
    history_days: int = 0
    history_minutes: int = 0
    #: The schedule's events and what each one's expected crowd comes from (``series.EventSource``):
    #: filled by ``series.with_series``; empty means every event uses the arrival curve.
    event_sources: list[Any] = field(default_factory=list)

    def point(self, zone_id: str, y: np.ndarray, ts: np.ndarray, origins: np.ndarray,
              day: DaySchedule | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, level), shape (len(origins), len(horizons)), before clipping.

        ``day``: the schedule of the day the series belongs to (past days in training and
        calibration); default the site's own schedule.
        """
        zone = self.zones[zone_id]
        h = np.asarray(self.horizons)
        profile, events = (day.profile, day.events) if day is not None else (self.profile, self.events)
        if not self.schedule_aware:
            profile = None
        X, level = features(y, ts, origins, h, zone, profile, events)
        level = level.reshape(origins.size, h.size)
        if self.method in ("naive", "persistence"):
            mean = np.repeat(y[origins][:, None], h.size, axis=1)
        elif self.method == "profile":
            if profile is None:
                mean = level.copy()
            else:
                ratio = profile_ratio(y, ts, origins, zone, profile)[:, None]
                t_o = ts[origins]
                p0 = profile.at(zone_id, t_o)[:, None]
                ph = profile.at(zone_id, t_o[:, None] + h[None, :] * 60.0)
                mean = level + ratio * (ph - p0)
        elif self.method == "ets":
            from crowdsafe.forecast.ets import ets_forecast

            mean = ets_forecast(y, origins, h)
        elif self.method == "gbm":
            mean = level + zone.scale * self.estimator.predict(X).reshape(origins.size, h.size)
        else:
            raise ValueError(f"unknown forecast method {self.method!r}; one of {', '.join(METHODS)}")
        return mean, level

    def predict(self, zone_id: str, y: np.ndarray, ts: np.ndarray, origins: np.ndarray,
                day: DaySchedule | None = None) -> dict[str, np.ndarray]:
        """mean, lo80/hi80, lo90/hi90, lo95/hi95 per (origin, horizon), clipped to the zone's limits."""
        zone = self.zones[zone_id]
        mean, level = self.point(zone_id, y, ts, origins, day)
        mean = zone.clip(mean)
        out = {"mean": mean}
        if self.method == "persistence":
            for lvl in LEVELS:
                lo, hi = empirical_bounds(y, origins, self.horizons, lvl)
                tag = round(lvl * 100)
                out[f"lo{tag}"], out[f"hi{tag}"] = zone.clip(mean + lo), zone.clip(mean + hi)
        elif self.conformal is not None:
            # Around the clipped mean, exactly as ``calibrate`` scored the residuals: otherwise a
            # point forecast below zero (an empty zone) would shift its interval the wrong way.
            scale = local_scale(mean, level, zone)
            for lvl in LEVELS:
                lo, hi = self.conformal.bounds(mean, scale, lvl, zone_id)
                tag = round(lvl * 100)
                out[f"lo{tag}"], out[f"hi{tag}"] = zone.clip(lo), zone.clip(hi)
        return out


def empirical_bounds(y: np.ndarray, origins: np.ndarray, horizons: Sequence[int],
                     level: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) offsets from the last reading, (len(origins), len(horizons)), from the changes
    the zone itself showed before each origin: no model, no simulated days.

    A zone with a flat or very short past still gets counting noise: at least
    ±1.28·sqrt(count) for 80 % (Poisson), scaled to the level, never less than one person.
    """
    z = {0.80: 1.2816, 0.90: 1.6449, 0.95: 1.96}.get(round(level, 2), 1.96)
    lo = np.zeros((origins.size, len(horizons)))
    hi = np.zeros_like(lo)
    for i, o in enumerate(origins):
        past = y[:o + 1]
        floor = z * max(math.sqrt(max(float(past[-1]), 1.0)), 1.0)
        for k, h in enumerate(horizons):
            lag, factor = h, 1.0
            while lag > 1 and past.size - lag < MIN_CHANGES:
                lag //= 2
            if past.size - lag >= 2:
                d = past[lag:] - past[:-lag]
                factor = h / lag
                # Symmetric: a crowd that has been arriving will leave, and the past changes'
                # signs say little about the next hour's; their sizes say more.
                b = float(np.quantile(np.abs(d), level)) * factor
                a = -b
            else:
                a = b = 0.0
            lo[i, k], hi[i, k] = min(a, -floor), max(b, floor)
    return lo, hi


def _origins(n: int, every: int, max_h: int) -> np.ndarray:
    return np.arange(MIN_HISTORY_MIN, n - max_h, every)


@dataclass(frozen=True)
class DaySchedule:
    """A past day's schedule as the models see it: its events and their expected profile."""

    events: list[EventSpec]
    profile: SiteProfile | None

    @classmethod
    def of(cls, site: Site, events: list[EventSpec]) -> DaySchedule:
        return cls(events, site_profile(site, events) if events else None)


def _rows(model: SiteForecastModel, site: Site, days: Sequence[Any],
          every: int) -> tuple[np.ndarray, ...]:
    """Stacked (X, target change / scale, h) over days and zones."""
    h = np.asarray(model.horizons)
    Xs, targets, hs = [], [], []
    for day in days:
        sched = DaySchedule.of(site, day.events)
        for zone_id, y in day.observed.items():
            zone = model.zones[zone_id]
            origins = _origins(y.size, every, int(h.max()))
            X, level = features(y, day.ts, origins, h, zone,
                                sched.profile if model.schedule_aware else None, sched.events)
            future = y[(origins[:, None] + h[None, :]).ravel()]
            Xs.append(X)
            targets.append((future - level) / zone.scale)
            hs.append(np.tile(h, origins.size))
    return np.concatenate(Xs), np.concatenate(targets), np.concatenate(hs)


def calibrate(model: SiteForecastModel, site: Site, days: Sequence[Any], every: int = 2) -> Conformal:
    """Conformal quantiles from the model's residuals on days it was not trained on."""
    scores, hs, zs = [], [], []
    h = np.asarray(model.horizons)
    for day in days:
        sched = DaySchedule.of(site, day.events)
        for zone_id, y in day.observed.items():
            zone = model.zones[zone_id]
            origins = _origins(y.size, every, int(h.max()))
            mean, level = model.point(zone_id, y, day.ts, origins, sched)
            mean = zone.clip(mean)
            future = y[origins[:, None] + h[None, :]]
            scores.append(((future - mean) / local_scale(mean, level, zone)).ravel())
            hs.append(np.tile(h, origins.size))
            zs.append(np.full(origins.size * h.size, zone_id, dtype=object))
    return Conformal.fit(model.horizons, np.concatenate(hs), np.concatenate(scores), np.concatenate(zs))


def fit_site_model(site: Site, method: str = "gbm", *, train_days: int = 12,
                   calib_days: int = 10, seed: int = 1000, schedule_aware: bool | None = None,
                   horizons: Sequence[int] = HORIZONS_MIN, history: Sequence[Any] | None = None,
                   ) -> SiteForecastModel:
    """Fit ``method`` for every zone of ``site`` on event days, then calibrate its intervals.

    ``history``: past days (objects with ``ts``, ``observed`` {zone: one-minute counts} and
    ``events`` [EventSpec]) to learn from; without it,
    synthetic days of the site's schedule (``simulate_day``, seeds from ``seed``). The first
    ``train_days`` train the point model, the next ``calib_days`` calibrate the intervals.
    ``schedule_aware`` defaults to whether the site has a schedule.
    """
    from crowdsafe.forecast.simulate_day import simulate_days

    if method not in METHODS:
        raise ValueError(f"unknown forecast method {method!r}; one of {', '.join(METHODS)}")
    aware = bool(site.schedule) if schedule_aware is None else schedule_aware
    events = site_events(site)
    profile = site_profile(site, events) if events else None
    if method == "persistence":  # nothing to fit, nothing simulated
        return SiteForecastModel(method, tuple(horizons), zone_infos(site, profile), profile, events,
                                 schedule_aware=False, trained_on="none")
    days = list(history) if history is not None else simulate_days(site, train_days + calib_days, seed)
    train, calib = days[:train_days], days[train_days:]
    if not calib:
        raise ValueError("need at least one calibration day after the training days")
    model = SiteForecastModel(method, tuple(horizons), zone_infos(site, profile), profile, events,
                              schedule_aware=aware and profile is not None,
                              trained_on="history" if history is not None
                              else "schedule" if method == "profile" else "simulated")
    if method == "gbm":
        hgb = require_sklearn()
        from threadpoolctl import threadpool_limits

        X, target, _ = _rows(model, site, train, every=2)
        ok = np.isfinite(target)  # a stored day can hold a gap the features cannot bridge
        X, target = X[ok], target[ok]
        with threadpool_limits(limits=1):  # the machine is shared; one core is enough here
            model.estimator = hgb(max_iter=300, learning_rate=0.06, max_leaf_nodes=31,
                                  min_samples_leaf=40, l2_regularization=1.0,
                                  random_state=seed).fit(X, target)
    model.conformal = calibrate(model, site, calib)
    return model


_MODELS: dict[tuple[str, str, int], SiteForecastModel] = {}
_MODELS_LOCK = threading.Lock()


def cached_site_model(site: Site, method: str = "gbm", seed: int = 1000) -> SiteForecastModel:
    """``fit_site_model`` once per (site content, method, seed) per process: the API and a live
    loop ask for forecasts every minute, while fitting takes seconds. The lock makes a second
    caller (the API while the runner fits, in one process) wait for the first fit, not repeat it."""
    key = (site.model_dump_json(), method, seed)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = fit_site_model(site, method, seed=seed)
        return _MODELS[key]
