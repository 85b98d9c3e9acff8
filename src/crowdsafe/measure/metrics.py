"""The numbers alert rules watch, from a frame's zone readings: counts, ranks, % of capacity, clearance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.measure.zones import ZoneReading
from crowdsafe.safety.profiles import ProfileBook
from crowdsafe.safety.rules import CLEARANCE_METRIC
from crowdsafe.simulate.clearance import live_clearance_s


@dataclass(frozen=True)
class Metric:
    """A number an alert rule may watch: (subject, metric name, value)."""

    subject: str
    metric: str
    value: float


def zone_metrics(geometry: SiteGeometry, readings: list[ZoneReading], book: ProfileBook) -> list[Metric]:
    """Numbers for alert rules: density, LoS and risk ranks, count, % of capacity, clearance time."""
    risk_labels = [band.label for band in book.risk.bands]
    out = []
    for r in readings:
        zone = geometry.zones[r.zone_id].zone
        out.append(Metric(r.zone_id, "count", r.count))
        if not math.isnan(r.density):
            out.append(Metric(r.zone_id, "density", r.density))
        if r.los is not None:
            labels = [band.label for band in book.los_profile(zone.type, zone.los_profile).bands]
            out.append(Metric(r.zone_id, "los_rank", float(labels.index(r.los))))
        if r.risk is not None:
            out.append(Metric(r.zone_id, "risk_rank", float(risk_labels.index(r.risk))))
        if zone.capacity:
            out.append(Metric(r.zone_id, "capacity_pct", 100.0 * r.count / zone.capacity))
        clearance = live_clearance_s(zone, r.count, geometry.site.safety)
        if clearance is not None:  # zones with exits: the egress_time rules
            out.append(Metric(r.zone_id, CLEARANCE_METRIC, clearance))
    return out
