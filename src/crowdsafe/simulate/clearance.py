"""Flow-based clearance time: how long a zone's crowd takes to pass its exits.

Why and how: docs/design-notes.md, ``crowdsafe.simulate.clearance``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crowdsafe.config.site import Exit, SafetyConfig, Zone
from crowdsafe.safety.guidance import EGRESS_TARGET_S, GREEN_GUIDE_PMM


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
    flows = {**GREEN_GUIDE_PMM, **(specific_flow or {})}
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
                    threshold_s: float = EGRESS_TARGET_S,
                    specific_flow: Mapping[str, float] | None = None) -> float:
    """People the exits clear within ``threshold_s``: the occupancy at which the alert fires."""
    return exit_flow_pm(exits, specific_flow) * threshold_s / 60.0
