"""Per-zone occupancy forecasts with prediction intervals, staffing plans from them, backtests.

Entry points: ``fit_site_model`` / ``cached_site_model`` (a fitted model for every zone of a
site), ``ZoneForecaster`` (live: readings in, ``Forecast`` out), ``forecast_site`` (store rows
in), ``plan_staffing`` (forecasts in, ``StaffingPlan`` out), ``backtest`` and ``simulate_day``.
"""

from crowdsafe.forecast.backtest import BacktestResult, backtest
from crowdsafe.forecast.features import HORIZONS_MIN
from crowdsafe.forecast.forecaster import Forecast, ZoneForecaster, forecast_site, resample_minutes
from crowdsafe.forecast.model import (
    METHODS,
    ForecastDependencyError,
    SiteForecastModel,
    cached_site_model,
    fit_site_model,
)
from crowdsafe.forecast.simulate_day import SimulatedDay, demo_schedule, simulate_day, simulate_days
from crowdsafe.forecast.staffing import SiteSlot, StaffingPlan, ZoneSlot, plan_staffing

__all__ = [
    "HORIZONS_MIN", "METHODS", "BacktestResult", "Forecast", "ForecastDependencyError", "SimulatedDay",
    "SiteForecastModel", "SiteSlot", "StaffingPlan", "ZoneForecaster", "ZoneSlot", "backtest",
    "cached_site_model", "demo_schedule", "fit_site_model", "forecast_site", "plan_staffing",
    "resample_minutes", "simulate_day", "simulate_days",
]
