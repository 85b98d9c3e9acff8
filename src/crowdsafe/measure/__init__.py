"""Measurements from density maps: zone readings, line flow, people-free backgrounds, alert metrics."""
