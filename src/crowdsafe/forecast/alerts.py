"""The forecast's alert: a zone expected to pass its capacity within the next half hour.

A capacity alert on the live count arrives when the zone is already full; the forecast's
80 % upper bound gives stewards the 15-30 minutes needed to open overflow areas or hold the
gate. The metric is the highest upper bound over horizons up to ``WITHIN_MIN``, as % of the
zone's capacity (zones without a capacity have no such metric). Forecasts refresh once a
minute, so the rule's 60 s minimum duration means two forecasts in a row must agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from crowdsafe.config.site import Site
from crowdsafe.forecast.forecaster import Forecast
from crowdsafe.safety.alerts import AlertRule

FORECAST_CAPACITY_METRIC = "forecast_capacity_pct"
WITHIN_MIN = 30


def forecast_alert_rules(raise_pct: float = 100.0, clear_pct: float = 90.0) -> list[AlertRule]:
    return [AlertRule("capacity_forecast", FORECAST_CAPACITY_METRIC, raise_at=raise_pct, clear_at=clear_pct,
                      min_duration_s=60.0, severity="warning")]


def forecast_metrics(site: Site, forecasts: Mapping[str, Forecast], within_min: int = WITHIN_MIN,
                     bound: str = "hi80") -> list[tuple[str, str, float]]:
    """(zone, metric, value) for the alert sink: peak bound within ``within_min``, % of capacity."""
    capacity = {z.id: z.capacity for z in site.zones if z.capacity}
    out = []
    for zone_id, fc in forecasts.items():
        if zone_id not in capacity:
            continue
        values = [v for h, v in zip(fc.horizons, fc.bound(bound), strict=True) if h <= within_min]
        if values:
            out.append((zone_id, FORECAST_CAPACITY_METRIC, 100.0 * max(values) / capacity[zone_id]))
    return out
