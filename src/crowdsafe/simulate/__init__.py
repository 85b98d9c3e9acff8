"""Clearance of a zone at a given occupancy: a flow formula always, a JuPedSim run on demand."""

from crowdsafe.simulate.clearance import (
    DEFAULT_SPECIFIC_FLOW,
    ExitSpec,
    clearance_time,
    egress_capacity,
    live_clearance_s,
    zone_clearance_time,
)

__all__ = ["DEFAULT_SPECIFIC_FLOW", "ExitSpec", "clearance_time", "egress_capacity", "live_clearance_s",
           "zone_clearance_time"]
