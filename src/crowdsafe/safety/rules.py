"""Every alert rule crowdsafe ships: density, capacity, flow, egress, forecast and camera health.

Why and how: docs/design-notes.md, ``crowdsafe.safety.rules``."""

from __future__ import annotations

from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.guidance import EGRESS_TARGET_S, GREEN_GUIDE_LEVEL_PMM, GREEN_GUIDE_STAIRS_PMM

#: The metric the egress rules watch: feed ``AlertEngine.update(zone, CLEARANCE_METRIC, ts, seconds)``.
CLEARANCE_METRIC = "clearance_s"
#: The metric the forecast rule watches: peak forecast bound as % of capacity (``forecast.alerts``).
FORECAST_CAPACITY_METRIC = "forecast_capacity_pct"
#: A line's flow raises above the level rate and clears under the stairs rate.
LINE_FLOW_PMM = GREEN_GUIDE_LEVEL_PMM
STALE_CAMERA_S = 30.0
#: Least seconds a zone condition must last before it raises, and be gone before it clears.
ZONE_HOLD_S = 20.0
#: A zone or line condition back within this many seconds of clearing reopens the same alert.
COOLDOWN_S = 300.0


def default_rules(egress_s: float = EGRESS_TARGET_S) -> list[AlertRule]:
    """The rules above; ``egress_s`` is the site's egress limit (``safety.egress_limit_s``, default
    8 minutes). Policy takes numbers, not the site file, so it sits below ``config``."""
    hold, cool = ZONE_HOLD_S, COOLDOWN_S
    return [*egress_alert_rules(egress_s), *forecast_alert_rules(),
        AlertRule("risk_slowed", "risk_rank", raise_at=1, clear_at=1, min_duration_s=hold, severity="warning",
                  cooldown_s=cool),
        AlertRule("risk_critical", "risk_rank", raise_at=2, clear_at=2, min_duration_s=10,
                  clear_hold_s=hold, severity="critical", cooldown_s=cool),
        AlertRule("los_e", "los_rank", raise_at=4, clear_at=4, min_duration_s=hold, severity="warning",
                  cooldown_s=cool),
        AlertRule("capacity_90", "capacity_pct", raise_at=90, clear_at=80, min_duration_s=hold,
                  severity="warning", cooldown_s=cool),
        AlertRule("capacity_100", "capacity_pct", raise_at=100, clear_at=95, min_duration_s=5,
                  clear_hold_s=hold, severity="critical", cooldown_s=cool),
        AlertRule("surge", "count", raise_at=30, clear_at=10, rate_window_s=60, severity="warning",
                  clear_hold_s=hold, cooldown_s=cool),
        AlertRule("line_flow", "flow_pmm", raise_at=LINE_FLOW_PMM, clear_at=GREEN_GUIDE_STAIRS_PMM,
                  min_duration_s=10, clear_hold_s=hold, severity="warning", cooldown_s=cool),
        AlertRule("camera_stale", "stale_s", raise_at=STALE_CAMERA_S, clear_at=5, severity="critical"),
    ]


def egress_alert_rules(threshold_s: float = EGRESS_TARGET_S, warn_fraction: float = 0.75,
                       hysteresis: float = 0.9, min_duration_s: float = 30.0) -> list[AlertRule]:
    """Rules on ``clearance_s``: critical at the threshold, warning at ``warn_fraction`` of it.

    Clearing below 90 % of the raise level and a 30 s minimum duration keep a count hovering at
    the limit from flapping the alert (see ``crowdsafe.safety.alerts``).
    """
    if not 0 < warn_fraction <= 1 or not 0 < hysteresis <= 1:
        raise ValueError("warn_fraction and hysteresis must be in (0, 1]")
    warn = threshold_s * warn_fraction
    return [
        AlertRule(name="egress_time_warning", metric=CLEARANCE_METRIC, raise_at=warn,
                  clear_at=warn * hysteresis,
                  min_duration_s=min_duration_s, severity="warning"),
        AlertRule(name="egress_time", metric=CLEARANCE_METRIC, raise_at=threshold_s,
                  clear_at=threshold_s * hysteresis, min_duration_s=min_duration_s, severity="critical"),
    ]


def forecast_alert_rules(raise_pct: float = 100.0, clear_pct: float = 90.0) -> list[AlertRule]:
    """The forecast's capacity rule; its 60 s minimum means two once-a-minute forecasts must agree."""
    return [AlertRule("capacity_forecast", FORECAST_CAPACITY_METRIC, raise_at=raise_pct, clear_at=clear_pct,
                      min_duration_s=60.0, severity="warning")]
