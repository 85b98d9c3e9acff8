"""Clearance of a zone at a given occupancy: a flow formula always, a JuPedSim run on demand."""

from crowdsafe.simulate.clearance import (
    DEFAULT_SPECIFIC_FLOW,
    EGRESS_THRESHOLD_S,
    ExitSpec,
    clearance_time,
    egress_alert_rules,
    egress_capacity,
    zone_clearance_time,
)

__all__ = ["DEFAULT_SPECIFIC_FLOW", "EGRESS_THRESHOLD_S", "ExitSpec", "clearance_time", "egress_alert_rules",
           "egress_capacity", "zone_clearance_time"]
