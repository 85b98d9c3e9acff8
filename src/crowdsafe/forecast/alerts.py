"""The forecast's alert: a zone expected to pass its capacity within the next half hour.

A capacity alert on the live count arrives when the zone is already full; the forecast's
80 % upper bound gives stewards the 15-30 minutes needed to open overflow areas or hold the
gate. The metric is the highest upper bound over horizons up to ``WITHIN_MIN``, as % of the
zone's capacity (zones without a capacity have no such metric); the rule on it is
``safety.rules.forecast_alert_rules``.
"""

from __future__ import annotations

from collections.abc import Mapping

from crowdsafe.config.site import Site
from crowdsafe.forecast.forecaster import Forecast
from crowdsafe.safety.rules import FORECAST_CAPACITY_METRIC

WITHIN_MIN = 30


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
