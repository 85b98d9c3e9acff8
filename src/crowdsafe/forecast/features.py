"""What a model sees at a forecast origin: the recent level and trend, the profile, the clocks.

Everything is computed from readings at or before the origin (never after: a feature that
peeks at the future makes a backtest lie) plus the schedule, which is known in advance. Counts
are divided by the zone's scale (capacity, or the profile's peak), so one model serves a
40-person walkway and a 4,000-person arena floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsafe.forecast.schedule import STEP_S, EventSpec, SiteProfile, schedule_clock

#: Horizons (minutes) every model forecasts; the backtest reports a subset.
HORIZONS_MIN: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60)
LEVEL_MIN = 3  # the "current level" is the mean of the last 3 one-minute readings
LAGS_MIN = (5, 15, 30)
ZONE_TYPE_CODE = {"walkway": 0.0, "queue": 1.0, "standing": 2.0}


@dataclass(frozen=True)
class ZoneInfo:
    """What the forecaster knows of a zone: type, scale for normalising, and the clip limit."""

    zone_id: str
    zone_type: str
    scale: float
    clip_max: float | None  # forecasts are clipped to [0, clip_max]

    def clip(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values, 0.0, self.clip_max if self.clip_max is not None else np.inf)


def trailing_mean(y: np.ndarray, idx: np.ndarray, width: int) -> np.ndarray:
    """Mean of y[i-width+1 .. i] for each i in idx (fewer points at the start of the series)."""
    csum = np.concatenate([[0.0], np.cumsum(y)])
    hi = idx + 1
    lo = np.maximum(hi - width, 0)
    return (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)


def features(y: np.ndarray, ts: np.ndarray, origins: np.ndarray, horizons: np.ndarray, zone: ZoneInfo,
             profile: SiteProfile | None, events: list[EventSpec]) -> tuple[np.ndarray, np.ndarray]:
    """(X, level): one row per (origin, horizon), origin-major; ``level`` in people.

    ``y`` is the one-minute series (no NaN), ``ts`` its epoch times, ``origins`` indices into
    it. Only y[:origin+1] is read for each row.
    """
    n_o, n_h = origins.size, horizons.size
    level = trailing_mean(y, origins, LEVEL_MIN)
    cols: list[np.ndarray] = [np.tile(horizons.astype(float), n_o),
                              np.full(n_o * n_h, ZONE_TYPE_CODE.get(zone.zone_type, 0.0))]
    rep = lambda a: np.repeat(a, n_h)  # noqa: E731
    cols += [rep(level / zone.scale), rep(y[origins] / zone.scale)]
    for k in LAGS_MIN:
        past = trailing_mean(y, np.maximum(origins - k, 0), LEVEL_MIN)
        cols.append(rep((level - past) / zone.scale))
    if profile is not None:
        t_origin = ts[origins]
        t_target = (t_origin[:, None] + horizons[None, :] * STEP_S).ravel()
        p0 = rep(profile.at(zone.zone_id, t_origin))
        ph = profile.at(zone.zone_id, t_target)
        ratio = profile_ratio(y, ts, origins, zone, profile)
        cols += [p0 / zone.scale, ph / zone.scale, (ph - p0) / zone.scale, rep(np.log(ratio)),
                 (rep(level) + rep(ratio) * (ph - p0)) / zone.scale]
        cols += list(schedule_clock(events, t_target).T)
    return np.stack(cols, axis=1), rep(level)


def profile_ratio(y: np.ndarray, ts: np.ndarray, origins: np.ndarray, zone: ZoneInfo,
                  profile: SiteProfile, window: int = 15) -> np.ndarray:
    """How much bigger the crowd is than the profile expected over the last ``window`` minutes.

    Regularised by 5 % of the zone's scale so an empty profile (before the doors) reads 1, not
    a wild ratio of two small numbers; clipped to [0.33, 3].
    """
    seen = trailing_mean(y, origins, window)
    expected = trailing_mean(profile.at(zone.zone_id, ts), origins, window)
    reg = 0.05 * zone.scale
    return np.clip((seen + reg) / (expected + reg), 1 / 3, 3.0)
