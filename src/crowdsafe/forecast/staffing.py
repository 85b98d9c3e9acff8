"""Stewards per zone and medics per site for the next time slots, from occupancy forecasts.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.staffing``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from crowdsafe.config.site import Site, Staffing, Zone
from crowdsafe.forecast.forecaster import Forecast
from crowdsafe.forecast.schedule import zone_area
from crowdsafe.safety.profiles import Profile


@dataclass(frozen=True)
class ZoneSlot:
    """Stewards one zone needs in one slot, and why (each term of the policy)."""

    zone_id: str
    slot_start_ts: float
    slot_end_ts: float
    people: float  # the forecast bound planned for (max over the slot)
    density: float | None  # people per m² of the zone's area
    los: str | None
    open: bool
    by_ratio: int  # ceil(people / people per steward)
    minimum: int
    extra_los: int
    stewards: int


CSV_FIELDS = ["zone_id", "slot_start_ts", "slot_end_ts", "people", "density", "los", "open", "by_ratio",
              "minimum", "extra_los", "stewards", "medics"]


@dataclass(frozen=True)
class SiteSlot:
    slot_start_ts: float
    slot_end_ts: float
    people: float  # sum of the zones' bounds (an upper bound on the site total)
    stewards: int
    medics: int


@dataclass(frozen=True)
class StaffingPlan:
    issued_ts: float
    slot_minutes: int
    bound: str
    zones: list[ZoneSlot] = field(default_factory=list)
    site: list[SiteSlot] = field(default_factory=list)
    #: The schedule events the plan's forecasts include, and what each one's crowd comes from.
    events: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"issued_ts": self.issued_ts, "slot_minutes": self.slot_minutes, "bound": self.bound,
                "zones": [asdict(z) for z in self.zones], "site": [asdict(s) for s in self.site],
                "events": self.events}

    def rows(self) -> list[dict[str, object]]:
        """One CSV row per zone and slot, plus a ``*site*`` row per slot with the medics."""
        out: list[dict[str, object]] = [{**asdict(z), "medics": ""} for z in self.zones]
        for s in self.site:
            out.append({"zone_id": "*site*", "slot_start_ts": s.slot_start_ts, "slot_end_ts": s.slot_end_ts,
                        "people": s.people, "density": None, "los": None, "open": s.people > 0,
                        "by_ratio": "", "minimum": "", "extra_los": "", "stewards": s.stewards,
                        "medics": s.medics})
        return out


def plan_csv(plan: StaffingPlan) -> str:
    """The plan's ``rows()`` as CSV text (header always, even for an empty plan)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(plan.rows())
    return buf.getvalue()


def zone_stewards(policy: Staffing, zone: Zone, people: float, los: str | None) -> tuple[int, int, int, int]:
    """(by_ratio, minimum, extra_los, total) for one zone holding ``people``; 0s when closed."""
    if people < policy.open_at_people:
        return 0, 0, 0, 0
    ratio = policy.steward_ratio(zone.type)
    by_ratio = math.ceil(people / ratio - 1e-9) if ratio else 0
    minimum = policy.min_stewards or 0
    extra = policy.extra_by_los.get(los, 0) if los is not None else 0
    return by_ratio, minimum, extra, max(by_ratio, minimum) + extra


def site_medics(policy: Staffing, people: float) -> int:
    if people < policy.open_at_people:
        return 0
    by_ratio = math.ceil(people / policy.people_per_medic - 1e-9) if policy.people_per_medic else 0
    return max(by_ratio, policy.min_medics)


def _los_profiles(site: Site) -> dict[str, Profile]:
    book = site.safety.profile_book()
    return {z.id: book.los_profile(z.type, z.los_profile) for z in site.zones}


def plan_staffing(site: Site, forecasts: Mapping[str, Forecast] | Iterable[Forecast], slot_minutes: int = 15,
                  bound: str | None = None, policy: Staffing | None = None) -> StaffingPlan:
    """Stewards per zone per slot and medics per slot, for the horizon the forecasts cover.

    Slots are aligned on the newest forecast's ``issued_ts``: slot k holds the forecasts whose
    target time is in (issued + k·slot, issued + (k+1)·slot], and slot 0 also the last count.
    Zones without a forecast are left out (not assumed empty).
    """
    policy = policy or site.staffing
    if policy is None:
        raise ValueError("the site file has no 'staffing' policy; add e.g. "
                         "staffing: {people_per_steward: 250, "
                         "min_stewards: 1, people_per_medic: 1000}")
    if slot_minutes <= 0:
        raise ValueError("slot_minutes must be positive")
    which = bound or policy.forecast_bound
    fc_list = list(forecasts.values()) if isinstance(forecasts, Mapping) else list(forecasts)
    if not fc_list:
        return StaffingPlan(0.0, slot_minutes, which)
    issued = max(f.issued_ts for f in fc_list)
    slot_s = 60.0 * slot_minutes
    span = max(max(f.target_ts()) for f in fc_list) - issued
    n_slots = max(1, math.ceil(span / slot_s - 1e-9))
    zones = {z.id: z for z in site.zones}
    profiles = _los_profiles(site)
    plan_zones: list[ZoneSlot] = []
    totals = [0.0] * n_slots
    stewards_total = [0] * n_slots
    for fc in sorted(fc_list, key=lambda f: f.zone_id):
        zone = zones.get(fc.zone_id)
        if zone is None:
            raise ValueError(f"forecast for zone {fc.zone_id!r}, which the site file does not have")
        peak = [0.0] * n_slots
        if fc.last_count is not None:
            peak[0] = fc.last_count
        for ts, value in zip(fc.target_ts(), fc.bound(which), strict=True):
            k = min(max(int((ts - issued - 1e-6) // slot_s), 0), n_slots - 1)
            peak[k] = max(peak[k], value)
        area = zone_area(zone)
        for k, people in enumerate(peak):
            density = people / area if area > 0 else None
            los = profiles[zone.id].classify(density) if density is not None else None
            by_ratio, minimum, extra, total = zone_stewards(policy, zone, people, los)
            plan_zones.append(ZoneSlot(zone.id, issued + k * slot_s, issued + (k + 1) * slot_s,
                                       round(people, 1),
                                       None if density is None else round(density, 3), los,
                                       people >= policy.open_at_people, by_ratio, minimum, extra, total))
            totals[k] += people
            stewards_total[k] += total
    site_slots = [SiteSlot(issued + k * slot_s, issued + (k + 1) * slot_s, round(totals[k], 1),
                           stewards_total[k], site_medics(policy, totals[k])) for k in range(n_slots)]
    events = list({str(e["event"]) + str(e["start_ts"]): e for f in fc_list for e in f.events}.values())
    return StaffingPlan(issued, slot_minutes, which, plan_zones, site_slots, events)
