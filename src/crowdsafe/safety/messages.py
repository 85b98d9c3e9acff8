"""Alert text an operator reads at a glance: "Main walkway: 2.9 people/m² for 40 s (limit 2.0)".

Rules watch machine quantities (a risk rank, % of capacity, seconds since the last frame); the
operator needs the place by its name, the number in its own unit, how long it has lasted and the
limit it passed. Rank rules (risk band, Level of Service) are told in people/m², with the density
limit read from the zone's own profile, so a site that changes a profile gets messages that match.
Pure functions and data, like the rest of ``safety``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from crowdsafe.safety.alerts import AlertRule, plain_message
from crowdsafe.safety.profiles import Profile


def duration(seconds: float) -> str:
    """``40 s``, ``3 min``, ``1 h 5 min``: whole units, as a person would say it."""
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def people(n: float) -> str:
    """``1 person``, ``7 people``: counts are estimates, shown whole."""
    whole = round(n)
    return "1 person" if whole == 1 else f"{whole} people"


def number(x: float) -> str:
    """One decimal at least, two when they matter: 2.0, 2.15, 1.08, 0.31, 12.5."""
    if not math.isfinite(x):
        return str(x)
    text = f"{x:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def percent(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0") if abs(x) < 10 else f"{x:.0f}"


@dataclass(frozen=True)
class MessageBook:
    """A ``Describe`` for ``AlertEngine``: names and profiles of one site's zones, lines and cameras."""

    names: Mapping[str, str] = field(default_factory=dict)  # subject id -> name shown
    los: Mapping[str, Profile] = field(default_factory=dict)  # zone id -> its LoS profile
    risk: Profile | None = None
    camera_ids: frozenset[str] = frozenset()

    def __call__(self, rule: AlertRule, subject: str, value: float, held_s: float,
                 latest: Mapping[str, float]) -> str:
        name = self.names.get(subject, subject)
        held = duration(held_s)
        density = latest.get("density")
        metric = rule.metric
        if metric == "density":
            return f"{name}: {number(value)} people/m² for {held} (limit {number(rule.raise_at)})"
        if metric in ("risk_rank", "los_rank"):
            profile = self.risk if metric == "risk_rank" else self.los.get(subject)
            rank = int(rule.raise_at)
            if profile is not None and 0 < rank < len(profile.bands) and density is not None:
                limit = profile.bands[rank - 1].upper
                band = profile.bands[min(int(value), len(profile.bands) - 1)].label
                what = f"risk {band}" if metric == "risk_rank" else f"Level of Service {band}"
                return f"{name}: {number(density)} people/m² for {held} (limit {number(limit)}, {what})"
        if metric == "capacity_pct":
            count, pct = latest.get("count"), latest.get("capacity_pct")
            head = ""
            if rule.smooth_s is not None:  # the tested value is a mean: so is the count told
                if count is not None and pct:
                    head = f"{people(count * value / pct)} on average over {duration(rule.smooth_s)}, "
                else:
                    head = f"on average over {duration(rule.smooth_s)}, "
            elif count is not None:
                head = f"{people(count)}, "
            return (f"{name}: {head}{percent(value)} % of capacity for {held} "
                    f"(limit {percent(rule.raise_at)} %)")
        if metric == "forecast_capacity_pct":
            return (f"{name}: forecast to reach {percent(value)} % of capacity within the next half hour "
                    f"(limit {percent(rule.raise_at)} %)")
        if metric == "count" and rule.rate_window_s is not None:
            return (f"{name}: gaining {value:.0f} people/min over the last {duration(rule.rate_window_s)} "
                    f"(limit {rule.raise_at:g})")
        if metric == "flow_pmm":
            return f"{name}: {value:.0f} people/m/min for {held} (limit {rule.raise_at:g})"
        if metric == "stale_s":
            label = f"Camera {name}" if subject in self.camera_ids else name
            return f"{label}: no new frame for {duration(value)} (limit {duration(rule.raise_at)})"
        if metric == "clearance_s":
            return (f"{name}: {duration(value)} to clear through its exits, for {held} "
                    f"(limit {duration(rule.raise_at)})")
        return plain_message(rule, name, value, held_s, latest)
