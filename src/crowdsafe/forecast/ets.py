"""Damped-trend exponential smoothing (statsmodels), a measured candidate, not the default.

It knows only the series: on an event day it extrapolates the ingress ramp past the start and
cannot see the egress coming, which is why the backtest keeps it for comparison only.
"""

from __future__ import annotations

import warnings

import numpy as np

from crowdsafe.forecast.errors import ForecastDependencyError

WINDOW_MIN = 60  # fit on the last hour: older minutes describe another phase of the day


def ets_forecast(y: np.ndarray, origins: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError as exc:
        raise ForecastDependencyError("the 'ets' candidate needs statsmodels: "
                                      "pip install statsmodels") from exc
    out = np.empty((origins.size, horizons.size))
    for k, i in enumerate(origins):
        window = y[max(0, i + 1 - WINDOW_MIN): i + 1]
        if window.size < 10:
            out[k] = window[-1]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(window, trend="add", damped_trend=True,
                                       initialization_method="estimated").fit()
        out[k] = fit.forecast(int(horizons.max()))[horizons - 1]
    return out
