"""Runners: the same stages in one process (local) or spread over a cluster (Ray)."""
