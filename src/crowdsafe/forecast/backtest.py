"""Rolling-origin backtest on synthetic event days: is the model better than doing nothing?

Why and how: docs/design-notes.md, ``crowdsafe.forecast.backtest``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.model import DaySchedule, SiteForecastModel, fit_site_model
from crowdsafe.forecast.simulate_day import simulate_days, with_schedule

REPORT_HORIZONS: tuple[int, ...] = (5, 15, 30, 60)
COVER_LEVELS = (80, 90, 95)
FIRST_ORIGIN_MIN = 15


@dataclass
class BacktestResult:
    """``metrics[method][horizon]`` = {mae, mase, rmae_naive, cover80, cover90, cover95, n}."""

    days: int
    seed: int
    zones: list[str]
    horizons: tuple[int, ...]
    metrics: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"days": self.days, "seed": self.seed, "zones": self.zones, "horizons": list(self.horizons),
                "mase_scale": "MAE of the seasonal naive (previous event day, same clock time) at the same "
                              "horizon and origins",
                "rmae_naive_scale": "MAE of the naive (last one-minute reading) at the same horizon and "
                                    "origins",
                "metrics": {m: {str(h): v for h, v in per_h.items()} for m, per_h in self.metrics.items()},
                "fit_seconds": self.fit_seconds, "seconds": round(self.seconds, 2)}


def backtest(site: Site, days: int = 3, seed: int = 1, methods: Sequence[str] = ("naive", "profile", "gbm"),
             every_min: int = 5, train_days: int = 12, calib_days: int = 10, fit_seed: int = 1000,
             horizons: Sequence[int] = REPORT_HORIZONS) -> BacktestResult:
    """Fit each method, then score it on ``days`` fresh synthetic days (see docs/design-notes.md)."""
    t_start = time.perf_counter()
    site = with_schedule(site)
    test_days = simulate_days(site, days + 1, seed=seed)
    result = BacktestResult(days, seed, [z.id for z in site.zones], tuple(horizons))
    models: dict[str, SiteForecastModel] = {}
    for method in dict.fromkeys(["naive", *methods]):
        t0 = time.perf_counter()
        models[method] = fit_site_model(site, method, train_days=train_days, calib_days=calib_days,
                                        seed=fit_seed)
        result.fit_seconds[method] = round(time.perf_counter() - t0, 2)
    errors: dict[str, list[np.ndarray]] = {m: [] for m in [*models, "seasonal_naive"]}
    inside: dict[str, dict[int, list[np.ndarray]]] = {m: {lvl: [] for lvl in COVER_LEVELS} for m in models}
    for prev, day in itertools.pairwise(test_days):
        sched = DaySchedule.of(site, day.events)
        for zone_id, y in day.observed.items():
            model_h = np.asarray(models["naive"].horizons)
            cols = [int(np.flatnonzero(model_h == h)[0]) for h in horizons]
            hs = np.asarray(horizons)
            origins = np.arange(FIRST_ORIGIN_MIN, y.size - int(model_h.max()), every_min)
            future = y[origins[:, None] + hs[None, :]]
            y_prev = prev.observed[zone_id]
            errors["seasonal_naive"].append(np.abs(y_prev[origins[:, None] + hs[None, :]] - future))
            for method, model in models.items():
                pred = model.predict(zone_id, y, day.ts, origins, sched)
                errors[method].append(np.abs(pred["mean"][:, cols] - future))
                for lvl in COVER_LEVELS:
                    if f"lo{lvl}" in pred:
                        lo, hi = pred[f"lo{lvl}"][:, cols], pred[f"hi{lvl}"][:, cols]
                        inside[method][lvl].append((future >= lo) & (future <= hi))
    mae = {m: np.concatenate(e).mean(axis=0) for m, e in errors.items()}
    n = int(np.concatenate(errors["naive"]).shape[0])
    for method in errors:
        per_h: dict[int, dict[str, float]] = {}
        for k, h in enumerate(horizons):
            row = {"mae": float(mae[method][k]), "mase": float(mae[method][k] / mae["seasonal_naive"][k]),
                   "rmae_naive": float(mae[method][k] / mae["naive"][k]), "n": n}
            for lvl in COVER_LEVELS:
                if method in inside and inside[method][lvl]:
                    row[f"cover{lvl}"] = float(np.concatenate(inside[method][lvl])[:, k].mean())
            per_h[h] = {key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()}
        result.metrics[method] = per_h
    result.seconds = time.perf_counter() - t_start
    return result


TABLE_COLUMNS = ("method", "h min", "MAE", "MASE", "rMAE_naive", "cover80 %", "cover90 %", "cover95 %")


def table_rows(result: BacktestResult) -> list[list[str]]:
    """Rows in ``TABLE_COLUMNS`` order, for printing."""
    rows = []
    for method, per_h in result.metrics.items():
        for h, m in per_h.items():
            cov = [f"{100 * m[f'cover{lvl}']:.1f}" if f"cover{lvl}" in m else "-" for lvl in COVER_LEVELS]
            rows.append([method, str(h), f"{m['mae']:.2f}", f"{m['mase']:.3f}", f"{m['rmae_naive']:.3f}",
                         *cov])
    return rows
