"""The public event calendar and the series effect the benchmark learns from it."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from crowdsafe.forecast.events import (
    SENSOR_GROUPS,
    CalendarEvent,
    Occurrence,
    load_calendar,
    occurrences,
    series_effect,
)

SENSORS = sorted({s for group in SENSOR_GROUPS.values() for s in group} | {"61 Federal Street"})


def test_the_shipped_calendar_loads_and_says_how_it_was_compiled() -> None:
    from importlib import resources

    text = resources.files("crowdsafe").joinpath("data/akl_events.csv").read_text(encoding="utf-8")
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))
    assert "NEVER from the counts" in header
    cal = load_calendar(sensors=SENSORS)
    assert len(cal) >= 40
    years = {e.start.year for e in cal}
    assert {2019, 2020, 2021, 2022, 2023, 2024, 2025} <= years
    for e in cal:
        assert e.source and e.status in ("held", "cancelled") and e.end >= e.start
        assert set(e.sensors) <= set(SENSORS)
    nye = [e for e in cal if e.series == "nye-fireworks"]
    assert [e.start.year for e in nye] == [2020, 2021, 2022, 2023, 2024, 2025, 2026]
    assert [e.status for e in nye if e.start.year == 2022] == ["cancelled"]  # NYE 2021, COVID red
    assert set(nye[0].sensors) == set(SENSORS)  # the whole centre


def test_a_typo_in_the_sensors_is_an_error(tmp_path) -> None:
    path = tmp_path / "cal.csv"
    path.write_text("series,name,doors,start,end,place,sensors,status,source,note\n"
                    "x,X,,2024-01-01 10:00,2024-01-01 11:00,here,45 Queen Stret,held,news,\n")
    with pytest.raises(ValueError, match="unknown sensor"):
        load_calendar(str(path), sensors=SENSORS)


def test_window_runs_from_doors_to_an_hour_after_the_end() -> None:
    ev = CalendarEvent("s", "e", datetime(2024, 12, 31, 20, 0), datetime(2025, 1, 1, 0, 0),
                       datetime(2025, 1, 1, 0, 10), "p", ("a",), "held", "src")
    times = np.arange(np.datetime64("2024-12-31T00", "h"), np.datetime64("2025-01-02T00", "h"))
    (occ,) = occurrences([ev], "a", times)
    assert [str(t)[-2:] for t in times[occ.hours]] == ["20", "21", "22", "23", "00", "01"]
    assert occ.offsets.tolist() == [-4, -3, -2, -1, 0, 1]
    assert occurrences([ev], "b", times) == []
    cancelled = CalendarEvent("s", "e", None, ev.start, ev.end, "p", ("a",), "cancelled", "src")
    assert occurrences([cancelled], "a", times) == []


def _occ(start: int, name: str = "s") -> Occurrence:
    idx = np.arange(start, start + 3)
    return Occurrence(name, f"{name}@{start}", idx, idx - start)


def test_series_effect_learns_from_earlier_occurrences_only() -> None:
    y = np.full(1000, 100.0)
    base = np.full(1000, 100.0)
    occ = [_occ(100), _occ(400), _occ(700)]
    y[100:103] = 300.0  # the first occurrence tripled the crowd
    y[400:403] = 500.0  # the second quintupled it
    for h in (1, 24):
        eff = series_effect(y, base, h, occ)
        assert np.all(eff.factor[100:103] == 1.0) and np.all(eff.n_past[100:103] == 0)
        eps = 10.0
        np.testing.assert_allclose(eff.factor[400:403], (300 + eps) / (100 + eps))
        # Two earlier occurrences: the median of their log ratios.
        expect = np.exp(np.median([np.log(310 / 110), np.log(510 / 110)]))
        np.testing.assert_allclose(eff.factor[700:703], expect)
        assert set(eff.series[700:703]) == {"s"} and eff.series[50] == ""
        # What happens at or after an occurrence never changes its own or an earlier factor.
        y2 = y.copy()
        y2[700:] = 9999.0
        np.testing.assert_array_equal(series_effect(y2, base, h, occ).factor[:703], eff.factor[:703])


def test_an_occurrence_not_over_at_the_origin_is_not_used() -> None:
    y = np.full(300, 100.0)
    base = np.full(300, 100.0)
    y[100:103] = 400.0
    occ = [_occ(100), _occ(110)]  # the second starts 10 h after the first
    assert np.all(series_effect(y, base, 24, occ).n_past[110:113] == 0)  # a day ahead: not yet counted
    assert np.all(series_effect(y, base, 1, occ).n_past[110:113] == 1)
