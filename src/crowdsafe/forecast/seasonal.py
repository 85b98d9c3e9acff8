"""A forecaster learned from a site's own history of regularly sampled counts (hourly, or any step).

Why and how: docs/design-notes.md, ``crowdsafe.forecast.seasonal``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Features, in column order (documentation and tests; the trees see only the numbers).
FEATURE_NAMES: tuple[str, ...] = (
    "hour", "dow", "month", "y0", "y1", "y2", "day_mean", "lvl_ratio",
    "lag_day", "lag_2day", "lag_week", "lag_2week", "lag_3week", "lag_4week", "med_4week",
    "shape_week", "shape_profile", "shape_day", "scale_log", "anomaly_3h", "anomaly_pred",
    "special", "special_week_ago", "special_origin", "site_anom_1h", "site_anom_3h", "site_anom_24h",
    "series",
)
#: Offset of the log-ratio target, in units of the scale (a tenth of the weekly mean).
LOG_EPS = 0.1
#: Rolling conformal window, in days.
CONFORMAL_DAYS = 28


def _take(y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """y[idx] with NaN where idx is before the start (history that does not exist)."""
    out = y[np.clip(idx, 0, y.size - 1)]
    return np.where(idx >= 0, out, np.nan)


def _window_mean(y: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Mean of the finite values of y[end-length+1 .. end] for each end (NaN if none)."""
    finite = np.isfinite(y)
    cs = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    cn = np.concatenate([[0], np.cumsum(finite)])
    hi = end + 1
    lo = np.clip(hi - length, 0, None)
    n = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (cs[hi] - cs[lo]) / np.maximum(n, 1), np.nan)


def seasonal_features(y: np.ndarray, hour: np.ndarray, dow: np.ndarray, month: np.ndarray,
                      origins: np.ndarray, h: int, per_day: int = 24, special: np.ndarray | None = None,
                      series_id: int = 0, context: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X, scale) to forecast ``y[origin + h]`` from ``y[..origin]`` only.

    ``y``: one regular series (NaN = missing); ``hour``/``dow``/``month``: calendar of each index
    (hour as the step within the day); ``per_day``: steps per day. Lags that would fall after the
    origin are NaN (the trees treat them as missing), so no feature peeks at the future.
    ``scale``: the mean over the last week up to the origin, at least 1 (what the target and the
    count features are divided by). ``special``: 1 at indices of unusual days known in advance
    (public holidays, scheduled events), 0 elsewhere; flagged for the target, the hour a week
    before it (so the trees know the weekly lag is off) and the origin. ``series_id``: a
    category for the series (sensor or zone), 0 if unknown. ``context``: ``site_context`` of all
    the site's series (3 x len(y)), read at the origin; 1 (as usual) if not given.
    """
    t = np.asarray(origins, dtype=np.int64)
    j = t + h
    week = 7 * per_day
    scale = _window_mean(y, t, week)
    scale = np.where(np.isfinite(scale), np.maximum(scale, 1.0), np.nan)

    def lag(idx: np.ndarray) -> np.ndarray:
        v = _take(y, idx)
        return np.where(idx <= t, v, np.nan)

    y0, y1, y2 = lag(t), lag(t - 1), lag(t - 2)
    day_mean = _window_mean(y, t, per_day)
    prev_day_mean = _window_mean(y, t - week, per_day)
    lags = {L: lag(j - L) for L in (per_day, 2 * per_day, week, 2 * week, 3 * week, 4 * week)}
    weeks = np.stack([lags[week], lags[2 * week], lags[3 * week], lags[4 * week]])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: missing history, NaN is right
        med = np.nanmedian(weeks, axis=0)
        med_origin = np.nanmedian(np.stack([lag(t - k * week) for k in (1, 2, 3, 4)]), axis=0)
        c = 0.05 * scale  # keeps the shape ratios finite where the past hour was empty
        shape_week = y0 * (lags[week] + c) / (lag(t - week) + c)
        shape_profile = y0 * (med + c) / (med_origin + c)
        # A day ahead or more, yesterday's shape is not known yet: the profile's stands in (a
        # column that is all NaN would not fit).
        shape_day = ((y0 * (_take(y, j - per_day) + c) / (lag(t - per_day) + c)) if h < per_day
                     else shape_profile)
        lvl_ratio = (day_mean + c) / (prev_day_mean + c)
        # How far the last 3 hours ran above or below their usual (4-week median) level, and the
        # usual level of the target hour scaled by it: a busy evening tends to stay busy.
        recent = y0 + y1 + y2
        usual = med_origin + np.nanmedian(np.stack([lag(t - 1 - k * week) for k in (1, 2, 3, 4)]), axis=0) \
            + np.nanmedian(np.stack([lag(t - 2 - k * week) for k in (1, 2, 3, 4)]), axis=0)
        anomaly = (recent + 3 * c) / (usual + 3 * c)
        anomaly_pred = med * anomaly
        sp = np.zeros(y.size) if special is None else np.asarray(special, dtype=float)
        cols = [
            hour[np.clip(j, 0, hour.size - 1)].astype(float), dow[np.clip(j, 0, dow.size - 1)].astype(float),
            month[np.clip(j, 0, month.size - 1)].astype(float),
            y0 / scale, y1 / scale, y2 / scale, day_mean / scale, lvl_ratio,
            lags[per_day] / scale, lags[2 * per_day] / scale, lags[week] / scale, lags[2 * week] / scale,
            lags[3 * week] / scale, lags[4 * week] / scale, med / scale,
            shape_week / scale, shape_profile / scale, shape_day / scale, np.log10(scale),
            anomaly, anomaly_pred / scale, _take(sp, j), _take(sp, j - week), _take(sp, t),
            # Without context, "as usual" (1.0): an all-NaN column would not fit.
            *(np.ones((3, t.size)) if context is None else context[:, np.clip(t, 0, y.size - 1)]),
            np.full(t.size, float(series_id)),
        ]
    return np.column_stack(cols), scale


def site_context(series: Sequence[np.ndarray], per_day: int = 24) -> np.ndarray:
    """Site-wide anomaly at every index: the counts of all series over the last 1, 3 and 24 steps
    divided by their usual counts (median of the same steps 1-4 weeks before), summed over series.

    Why: rain, a holiday mood or a big event move every sensor of a site at once; pooled over
    the series this is a far less noisy signal than one sensor's own deviation. Only counts up
    to each index are used.
    """
    Y = np.asarray(series, dtype=float)
    week = 7 * per_day
    n = Y.shape[1]
    idx = np.arange(n)
    past = np.stack([np.where(idx - k * week >= 0, Y[:, np.clip(idx - k * week, 0, None)], np.nan)
                     for k in (1, 2, 3, 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        usual = np.nanmedian(past, axis=0)  # (series, n)
    ok = np.isfinite(Y) & np.isfinite(usual)
    num = np.where(ok, Y, 0.0).sum(axis=0)
    den = np.where(ok, usual, 0.0).sum(axis=0)
    out = np.full((3, n), np.nan)
    for row, length in enumerate((1, 3, per_day)):
        cn = np.concatenate([[0.0], np.cumsum(num)])
        cd = np.concatenate([[0.0], np.cumsum(den)])
        lo = np.clip(idx + 1 - length, 0, None)
        a, b = cn[idx + 1] - cn[lo], cd[idx + 1] - cd[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[row] = np.where(b > 0, a / b, np.nan)
    return out


#: Column of the baseline in ``seasonal_features``' output, and its fall-backs in order.
_BASE_COLS = (FEATURE_NAMES.index("shape_profile"), FEATURE_NAMES.index("med_4week"),
              FEATURE_NAMES.index("lag_week"), FEATURE_NAMES.index("y0"))


def baseline(X: np.ndarray) -> np.ndarray:
    """The forecast the trees correct, in units of the scale: the current count moved along the
    usual (4-week median) profile; else that profile, last week, the current count. Trees are
    piecewise constant, so learning a correction to a strong baseline beats learning the level."""
    out = X[:, _BASE_COLS[0]].copy()
    for col in _BASE_COLS[1:]:
        out = np.where(np.isfinite(out), out, X[:, col])
    return out


def calendar(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hour 0-23, day of week Monday=0, month 1-12) of numpy datetime64 times (local clock)."""
    t = np.asarray(times).astype("datetime64[h]")
    days = t.astype("datetime64[D]")
    hour = (t - days).astype(np.int64)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return hour, dow, month


@dataclass
class SeasonalGBM:
    """Direct multi-horizon gradient boosting on scale-free lag and calendar features.

    ``fit`` takes several series at once (sensors, zones) and learns one model per horizon
    across all of them; ``predict`` works on any series with the same sampling step.
    """

    horizons: tuple[int, ...] = (1, 24)
    per_day: int = 24
    max_iter: int = 300
    learning_rate: float = 0.08
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 100
    random_state: int = 0
    loss: str = "absolute_error"
    target: str = "additive"  # or "log": see ``_target``
    models: dict[int, Any] = field(default_factory=dict)
    n_train_rows: dict[int, int] = field(default_factory=dict)

    def fit(self, series: Sequence[np.ndarray], times: np.ndarray, train_end: int,
            origin_stride: int = 1, start: int | None = None, special: np.ndarray | None = None,
            series_ids: Sequence[int] | None = None, context: np.ndarray | None = None) -> SeasonalGBM:
        """Learn from every origin whose target is before index ``train_end`` (same index in each
        series; ``times`` gives the calendar, ``special`` the flagged days, see
        ``seasonal_features``). ``origin_stride`` > 1 thins the rows (speed)."""
        from crowdsafe.forecast.model import require_sklearn

        hgb = require_sklearn()
        from threadpoolctl import threadpool_limits

        hour, dow, month = calendar(times)
        first = 4 * 7 * self.per_day if start is None else max(start, 1)
        ids = list(series_ids) if series_ids is not None else [0] * len(series)
        for h in self.horizons:
            Xs, ys = [], []
            origins = np.arange(first, train_end - h, origin_stride)
            for y, sid in zip(series, ids, strict=True):
                X, scale = seasonal_features(y, hour, dow, month, origins, h, self.per_day, special, sid,
                                              context)
                target = self._target(y[origins + h] / scale, X)
                ok = np.isfinite(target) & np.isfinite(X[:, 3])  # a target and a current reading
                Xs.append(X[ok])
                ys.append(target[ok])
            X_all, y_all = np.concatenate(Xs), np.concatenate(ys)
            with threadpool_limits(limits=1):  # shared machines: one core is plenty
                self.models[h] = hgb(loss=self.loss, max_iter=self.max_iter,
                                     learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
                                     min_samples_leaf=self.min_samples_leaf, l2_regularization=1.0,
                                     categorical_features=[0, 1, len(FEATURE_NAMES) - 1],
                                     random_state=self.random_state).fit(X_all, y_all)
            self.n_train_rows[h] = int(y_all.size)
        return self

    def _target(self, y_scaled: np.ndarray, X: np.ndarray) -> np.ndarray:
        """What the trees learn: the correction to the baseline, additive or (``log``) as a log
        ratio. Both keep the absolute loss's answer a median, since the maps are monotone."""
        if self.target == "log":
            b = np.maximum(baseline(X), 0.0)
            return np.log((y_scaled + LOG_EPS) / (b + LOG_EPS))
        return y_scaled - baseline(X)

    def _inverse(self, f: np.ndarray, X: np.ndarray) -> np.ndarray:
        if self.target == "log":
            b = np.maximum(baseline(X), 0.0)
            return np.exp(f) * (b + LOG_EPS) - LOG_EPS
        return f + baseline(X)

    def predict(self, y: np.ndarray, times: np.ndarray, origins: np.ndarray, h: int,
                special: np.ndarray | None = None, series_id: int = 0,
                context: np.ndarray | None = None) -> np.ndarray:
        """Mean forecast of ``y[origin + h]`` for each origin (NaN where there is no reading to start
        from), clipped at zero: counts are never negative."""
        from threadpoolctl import threadpool_limits

        hour, dow, month = calendar(times)
        X, scale = seasonal_features(y, hour, dow, month, np.asarray(origins), h, self.per_day,
                                     special, series_id, context)
        with threadpool_limits(limits=1):
            pred = self._inverse(self.models[h].predict(X), X) * scale
        pred = np.where(np.isfinite(X[:, 3]) & np.isfinite(scale), pred, np.nan)
        return np.maximum(pred, 0.0)


def interval_scale(mean: np.ndarray, level: np.ndarray) -> np.ndarray:
    """How wide an interval should be: proportional to the forecast (counting noise and relative
    error grow with the crowd), plus a tenth of the recent level so a quiet night is not given
    a zero-width interval."""
    return np.maximum(mean, 0.0) + 0.1 * np.maximum(level, 1.0)


def rolling_conformal(y: np.ndarray, mean_all: np.ndarray, level_all: np.ndarray, h: int,
                      origins: np.ndarray, window: int, coverage: float = 0.80,
                      min_scores: int = 48, upper_tail: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) at ``origins`` from past residuals only.

    ``mean_all[t]``/``level_all[t]``: the forecast of y[t+h] made at every origin t (NaN where
    none). At an origin o, the scores are (y[t+h] - mean[t]) / scale for the forecasts whose
    target t+h <= o and t+h > o - window, i.e. already observed at o. Their empirical
    (1-coverage)/2 and (1+coverage)/2 quantiles (finite-sample conformal ranks) size the interval;
    ``upper_tail``: the share left above it instead of (1-coverage)/2 (the rest below), for an
    interval that leaves less room above, where a crowd's surprises are.
    """
    n = y.size
    t_all = np.arange(n)
    tgt = t_all + h
    with np.errstate(invalid="ignore"):
        score = (_take(y, np.where(tgt < n, tgt, -1)) - mean_all) / interval_scale(mean_all, level_all)
    up = (1 - coverage) / 2 if upper_tail is None else upper_tail
    lo_q, hi_q = 1 - coverage - up, 1 - up
    los, his = np.full(origins.size, np.nan), np.full(origins.size, np.nan)
    for k, o in enumerate(origins):
        a, b = max(o - window - h + 1, 0), o - h + 1  # origins t with o-window < t+h <= o
        s = score[a:max(b, a)]
        s = np.sort(s[np.isfinite(s)])
        if s.size < min_scores:
            continue
        lo_r = int(np.floor((s.size + 1) * lo_q))
        hi_r = int(np.ceil((s.size + 1) * hi_q))
        los[k], his[k] = s[np.clip(lo_r - 1, 0, s.size - 1)], s[np.clip(hi_r - 1, 0, s.size - 1)]
    sc = interval_scale(mean_all[origins], level_all[origins])
    lo = np.maximum(mean_all[origins] + los * sc, 0.0)
    hi = np.maximum(mean_all[origins] + his * sc, 0.0)
    return lo, hi
