"""The event debrief: a self-contained HTML report (inline SVG plots) of a period, from the store.

``compute`` turns the store into numbers (``Report``); ``render`` turns a ``Report`` into HTML
(and optionally PDF). Kept apart so every printed number is tested without drawing anything.
"""

from crowdsafe.report.compute import Report, build_report

__all__ = ["Report", "build_report"]
