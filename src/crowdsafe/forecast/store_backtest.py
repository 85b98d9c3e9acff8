"""Rolling-origin backtest on a site's *stored* history: ``crowdsafe forecast backtest --store URL``.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.store_backtest``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.forecaster import KEEP_MIN, resample_minutes
from crowdsafe.forecast.model import cached_site_model
from crowdsafe.forecast.schedule import STEP_S
from crowdsafe.store.store import Store


@dataclass
class StoreBacktest:
    """Metrics per method and horizon (minutes), and how much history the run had."""

    zones: list[str]
    minutes: dict[str, int]  # zone -> minutes of readings in the store
    metrics: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"zones": self.zones, "minutes_of_history": self.minutes,
                "methods": {m: {f"h{h}": v for h, v in by_h.items()} for m, by_h in self.metrics.items()}}


def store_series(store: Store, zone_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(minute start times, mean counts) of everything the store has for a zone, at one-minute
    resolution; only the run after the last gap longer than the live forecaster bridges."""
    rows = store.history("zone_readings", zone_id, "count", 0.0, 4e9, STEP_S)
    return resample_minutes([b for b, *_ in rows], [mean for _, mean, *_ in rows])


def history_backtest(store: Store, site: Site, every_min: int = 5) -> dict[int, dict[str, float]]:
    """Walk-forward scores of the ``history`` method (see docs/design-notes.md) per horizon; also
    ``days_tested`` and ``days_learned`` (how many of them the stored-history model forecast)."""
    from crowdsafe.forecast.history import MIN_HISTORY_DAYS, fit_history_days, score_days, stored_days
    from crowdsafe.forecast.live import default_method

    days = stored_days(store, site)
    fallback = cached_site_model(site, default_method(site))
    errs: dict[int, list[np.ndarray]] = {}
    base: dict[int, list[np.ndarray]] = {}
    hits: dict[int, list[np.ndarray]] = {}
    learned = 0
    for i in range(MIN_HISTORY_DAYS, len(days)):
        model = fit_history_days(site, days[:i])  # the days before it only: out of sample
        learned += model is not None
        for block in score_days(model or fallback, days[i:i + 1], every_min):
            for k, hk in enumerate(block.horizons):
                errs.setdefault(hk, []).append(block.errors[:, k])
                base.setdefault(hk, []).append(block.persistence[:, k])
                if block.hits is not None:
                    hits.setdefault(hk, []).append(block.hits[:, k])
    out: dict[int, dict[str, float]] = {}
    for hk, e in errs.items():
        mae, ref = float(np.mean(np.concatenate(e))), float(np.mean(np.concatenate(base[hk])))
        cover = float(np.mean(np.concatenate(hits[hk]))) if hits.get(hk) else float("nan")
        rel = round(mae / ref, 3) if ref > 0 else float("nan")
        out[hk] = {"mae": round(mae, 3), "rel_mae_persistence": rel,
                   "coverage80": round(cover, 3), "n": int(sum(a.size for a in e)),
                   "days_tested": len(days) - MIN_HISTORY_DAYS, "days_learned": learned}
    return out


def backtest_store(store: Store, site: Site, methods: Sequence[str] = ("persistence",),
                   every_min: int = 5) -> StoreBacktest:
    """Replay the live forecaster at past minutes of the stored readings (see docs/design-notes.md)."""
    if "history" in methods:
        rest = [m for m in methods if m != "history"]
        result = backtest_store(store, site, rest, every_min) if rest else StoreBacktest(
            [z.id for z in site.zones], {})
        result.metrics["history"] = history_backtest(store, site, every_min)
        return result
    series = {z.id: store_series(store, z.id) for z in site.zones}
    series = {z: s for z, s in series.items() if s[1].size > 1}
    result = StoreBacktest(sorted(series), {z: int(s[1].size) for z, s in series.items()})
    models = {m: cached_site_model(site, m) for m in methods}
    errors: dict[str, dict[int, list[np.ndarray]]] = {m: {} for m in [*methods, "_persistence"]}
    cover: dict[str, dict[int, list[np.ndarray]]] = {m: {} for m in methods}
    for zone_id, (ts, y) in series.items():
        for m, model in models.items():
            h = np.asarray(model.horizons)
            origins = np.arange(1, y.size - int(h.max()), every_min)
            if origins.size == 0:
                continue
            for o in origins:
                lo_i = max(0, o + 1 - KEEP_MIN)
                pred = model.predict(zone_id, y[lo_i:o + 1], ts[lo_i:o + 1], np.asarray([o - lo_i]))
                truth = y[o + h]
                for k, hk in enumerate(h):
                    errors[m].setdefault(int(hk), []).append(np.abs(pred["mean"][0, k] - truth[k]))
                    if m == methods[0]:  # the reference, once per forecast
                        errors["_persistence"].setdefault(int(hk), []).append(np.abs(y[o] - truth[k]))
                    if "lo80" in pred:
                        inside = pred["lo80"][0, k] <= truth[k] <= pred["hi80"][0, k]
                        cover[m].setdefault(int(hk), []).append(np.asarray(inside))
    for m in methods:
        result.metrics[m] = {}
        for hk, errs in errors[m].items():
            mae = float(np.mean(errs))
            base = float(np.mean(errors["_persistence"][hk]))
            result.metrics[m][hk] = {
                "mae": round(mae, 3),
                "rel_mae_persistence": round(mae / base, 3) if base > 0 else float("nan"),
                "coverage80": round(float(np.mean(cover[m][hk])), 3) if cover[m].get(hk) else float("nan"),
                "n": len(errs)}
    return result
