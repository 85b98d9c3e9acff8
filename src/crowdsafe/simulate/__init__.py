"""Clearance of a zone at a given occupancy: a flow formula always, a JuPedSim run on demand."""
