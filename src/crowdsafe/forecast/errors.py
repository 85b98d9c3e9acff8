"""Errors of the forecast package, in a module of their own so every forecast module can raise them.

``forecast.model`` and ``forecast.ets`` both raise :class:`ForecastDependencyError`; defining it
here (it was in ``model``) removes the ``model`` <-> ``ets`` import cycle (issue 17). It stays
importable from ``crowdsafe.forecast.model`` and ``crowdsafe.forecast``.
"""

from __future__ import annotations


class ForecastDependencyError(RuntimeError):
    """A forecast method needs an optional extra that is not installed."""
