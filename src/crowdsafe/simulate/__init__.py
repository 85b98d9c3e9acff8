"""Clearance of a zone at a given occupancy: a flow formula always, a JuPedSim run on demand."""

from crowdsafe.simulate.clearance import (
    CLEARANCE_METRIC,
    DEFAULT_SPECIFIC_FLOW,
    EGRESS_THRESHOLD_S,
    ExitSpec,
    clearance_time,
    egress_alert_rules,
    egress_capacity,
    live_clearance_s,
    zone_clearance_time,
)

__all__ = ["CLEARANCE_METRIC", "DEFAULT_SPECIFIC_FLOW", "EGRESS_THRESHOLD_S", "ExitSpec", "clearance_time",
           "egress_alert_rules", "egress_capacity", "live_clearance_s", "zone_clearance_time"]
