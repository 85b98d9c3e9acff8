"""Flow-based clearance time: how long a zone's crowd takes to pass its exits.

``T = N / Σ (width_i × specific_flow(kind_i))`` in minutes, with specific flows in people per
metre of clear width per minute: 82 on the level and 66 on stairs by default (the capacities
used in UK venue guidance, e.g. the Green Guide; a site sets its own in
``safety.specific_flow_pmm``). The formula assumes
every exit is used in proportion to its capacity and runs at capacity from the first second:
it ignores the walk to the exits and any queue interaction, so it is a *lower bound* on the
real clearance. Add ``travel_time_s`` for the walk, or use the JuPedSim what-if for geometry.

The 8-minute figure is a common egress-time design criterion for standing areas (guidance
gives ranges by venue and construction; it is policy, like the staffing ratios), so the alert
helper takes the threshold as an argument and a site sets it in ``safety.egress_limit_s``.
The live runner feeds every zone with exits through ``live_clearance_s`` into the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crowdsafe.config.site import Exit, SafetyConfig, Zone
from crowdsafe.safety.alerts import AlertRule

DEFAULT_SPECIFIC_FLOW: dict[str, float] = {"level": 82.0, "stairs": 66.0}
EGRESS_THRESHOLD_S = 8 * 60.0
#: The metric name the alert rules watch: feed ``AlertEngine.update(zone, CLEARANCE_METRIC, ts, seconds)``.
CLEARANCE_METRIC = "clearance_s"


@dataclass(frozen=True)
class ExitSpec:
    width_m: float
    kind: Literal["level", "stairs"] = "level"
    name: str = ""


def _exit(e: Exit | ExitSpec | Mapping[str, Any]) -> ExitSpec:
    if isinstance(e, Mapping):
        return ExitSpec(float(e["width_m"]), e.get("kind", "level"), str(e.get("name", "")))
    return ExitSpec(float(e.width_m), e.kind, e.name)


def exit_flow_pm(exits: Sequence[Exit | ExitSpec | Mapping[str, Any]],
                 specific_flow: Mapping[str, float] | None = None) -> float:
    """Σ width × specific flow: people per minute all exits together can pass."""
    flows = {**DEFAULT_SPECIFIC_FLOW, **(specific_flow or {})}
    total = 0.0
    for e in map(_exit, exits):
        if e.width_m <= 0:
            raise ValueError(f"exit {e.name or '?'}: width must be positive, got {e.width_m}")
        if e.kind not in flows:
            raise ValueError(f"exit {e.name or '?'}: no specific flow for kind {e.kind!r}; "
                             f"known {sorted(flows)}")
        total += e.width_m * flows[e.kind]
    return total


def clearance_time(count: float, exits: Sequence[Exit | ExitSpec | Mapping[str, Any]],
                   specific_flow: Mapping[str, float] | None = None, travel_time_s: float = 0.0) -> float:
    """Seconds for ``count`` people to pass ``exits``; inf when there is no exit, 0 when empty."""
    if count < 0 or not math.isfinite(count):
        raise ValueError(f"count must be a finite number >= 0, got {count}")
    if count == 0:
        return 0.0
    flow = exit_flow_pm(exits, specific_flow)
    if flow <= 0:
        return math.inf
    return 60.0 * count / flow + travel_time_s


def zone_clearance_time(zone: Zone, count: float, specific_flow: Mapping[str, float] | None = None) -> float:
    return clearance_time(count, zone.exits, specific_flow)


def live_clearance_s(zone: Zone, count: float, safety: SafetyConfig | None = None) -> float | None:
    """A zone's clearance time at ``count`` with the site's specific flows; None without exits.

    Counts from a density map are estimates and may be slightly negative or NaN on a bad
    frame: those read as an empty zone rather than an error in the live path.
    """
    if not zone.exits:
        return None
    flows = safety.specific_flow_pmm if safety is not None else None
    people = count if math.isfinite(count) and count > 0 else 0.0
    return clearance_time(people, zone.exits, flows)


def egress_capacity(exits: Sequence[Exit | ExitSpec | Mapping[str, Any]],
                    threshold_s: float = EGRESS_THRESHOLD_S,
                    specific_flow: Mapping[str, float] | None = None) -> float:
    """People the exits clear within ``threshold_s``: the occupancy at which the alert fires."""
    return exit_flow_pm(exits, specific_flow) * threshold_s / 60.0


def egress_alert_rules(threshold_s: float = EGRESS_THRESHOLD_S, warn_fraction: float = 0.75,
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
