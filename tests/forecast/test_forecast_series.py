"""Event series: a site whose store holds earlier occurrences of a series expects the next one to
look like them; without any, the attendance-scaled arrival curve; each forecast says which."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsafe.cli.forecast import demo_site_path
from crowdsafe.config.site import Site, Staffing, load_site
from crowdsafe.forecast.live import LiveForecasts
from crowdsafe.forecast.model import fit_site_model
from crowdsafe.forecast.schedule import site_events
from crowdsafe.forecast.series import expected_counts, learn_series
from crowdsafe.forecast.simulate_day import demo_schedule, shift_schedule, simulate_day
from crowdsafe.forecast.staffing import plan_staffing
from crowdsafe.store import open_store
from crowdsafe.store.store import Store

#: What really came (the simulated crowd) and what the organiser expected (the schedule): the
#: arrival curve planned for the schedule's number is off by half.
TRUE_ATTENDANCE, EXPECTED_ATTENDANCE = 640, 320
WEEK = 2  # days apart: the third match is two days after the second


def series_site(true: bool = False) -> Site:
    """The demo site with a home match on three Saturdays a week apart (series ``home-match``)."""
    site = load_site(demo_site_path())
    base = demo_schedule(attendance=TRUE_ATTENDANCE if true else EXPECTED_ATTENDANCE)
    events = [e.model_copy(update={"series": "home-match", "name": f"home match {k + 1}"})
              for k in range(3) for e in shift_schedule(base, WEEK * k)]
    copy = site.model_copy(update={"schedule": events if not true else base})
    copy._base_dir = site._base_dir
    return copy


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Store, list]:
    """The first two matches' readings in a store (simulated days stand in for recorded ones: no
    recorded event-day counts ship); the third match is the one to forecast."""
    truth_site = series_site(true=True)
    days = [simulate_day(truth_site, seed=11, day_index=WEEK * k) for k in range(3)]
    store = open_store(tmp_path_factory.mktemp("series") / "s.sqlite")
    for day in days[:2]:
        store.write("zone_readings", list(day.readings()))
    yield store, days
    store.close()


def peak_hour(day, zone_id: str) -> np.ndarray:
    """The day's clock hour (whole hour, UTC) with the most people in the zone: its minute times."""
    hours = np.floor(day.ts / 3600.0)
    best = max(np.unique(hours), key=lambda h: day.observed[zone_id][hours == h].mean())
    return hours == best


def test_two_stored_occurrences_forecast_the_third_a_day_ahead(stored) -> None:
    store, days = stored
    site = series_site()
    third = days[2]
    now = float(third.ts[0]) - 24 * 3600.0  # the day before the match
    expected, sources = expected_counts(site, store, third.ts, now)
    assert [(s.event, s.source, s.occurrences) for s in sources] == [("home match 3", "history", 2)]
    # The event's crowd: the standing lawn, and the whole site, at the hour each peaked. (The
    # queue at the gate is not held to it: how long it gets depends on that day's gate rate.)
    total = {"site": sum(third.observed.values())}
    hours = np.floor(third.ts / 3600.0)
    for name, series, forecast in (("lawn", third.observed["lawn"], expected["lawn"]),
                                   ("site", total["site"], sum(expected.values()))):
        best = max(np.unique(hours), key=lambda h, s=series: s[hours == h].mean())
        sel = hours == best
        seen, got = float(series[sel].mean()), float(forecast[sel].mean())
        assert seen > 100
        assert abs(got - seen) <= 0.3 * seen, (name, got, seen)


def test_without_history_the_arrival_curve_for_the_expected_attendance(stored, tmp_path) -> None:
    _, days = stored
    site = series_site()
    third = days[2]
    empty = open_store(tmp_path / "empty.sqlite")
    expected, sources = expected_counts(site, empty, third.ts, float(third.ts[0]) - 86_400.0)
    empty.close()
    assert [(s.source, s.attendance) for s in sources] == [("attendance", EXPECTED_ATTENDANCE)]
    sel = peak_hour(third, "lawn")
    # The organiser expected half the crowd that came: the curve scaled to it is far below, which
    # is what the stored occurrences correct.
    assert float(expected["lawn"][sel].mean()) < 0.7 * float(third.observed["lawn"][sel].mean())


def test_only_occurrences_over_before_now_are_learned(stored) -> None:
    store, days = stored
    site = series_site()
    events = site_events(site)
    first_end = events[0].end_ts
    assert learn_series(store, site, first_end - 60.0, events) == {}
    one = learn_series(store, site, first_end + 2 * 3600.0, events)
    assert one["home-match"].occurrences == 1
    two = learn_series(store, site, float(days[2].ts[0]), events)
    assert two["home-match"].occurrences == 2


def test_attendance_ratio_scales_the_learned_curve(stored) -> None:
    store, days = stored
    site = series_site()
    # The schedules said 320 for the stored matches; the third now says 640: twice the learned crowd.
    bigger = [e if k < 2 else e.model_copy(update={"expected_attendance": 2 * EXPECTED_ATTENDANCE})
              for k, e in enumerate(site.schedule)]
    site2 = site.model_copy(update={"schedule": bigger})
    now = float(days[2].ts[0]) - 86_400.0
    same, _ = expected_counts(site, store, days[2].ts, now)
    double, _ = expected_counts(site2, store, days[2].ts, now)
    sel = peak_hour(days[2], "lawn")
    assert float(double["lawn"][sel].mean()) == pytest.approx(2 * float(same["lawn"][sel].mean()), rel=0.05)


def test_live_forecasts_and_staffing_name_their_events(stored, tmp_path) -> None:
    _, days = stored
    store = open_store(tmp_path / "live.sqlite")
    for day in days[:2]:
        store.write("zone_readings", list(day.readings()))
    site = series_site().model_copy(update={"staffing": Staffing(people_per_steward=100)})
    third = days[2]
    # Readings of the third match up to 30 minutes before its start, as they would arrive live.
    start = site_events(site)[2].start_ts
    rows = [r for r in third.readings() if float(r["ts"]) <= start - 1800.0]
    store.write("zone_readings", rows)
    # Two stored days are too few to train on (3 needed): the arrival-curve fallback, fitted small
    # here for speed, and the series learned on top of it. The clock is the replay's.
    live = LiveForecasts(site, store=store, clock=lambda: start - 1800.0,
                         fit=lambda s, method, seed: fit_site_model(s, method, train_days=1, calib_days=2))
    assert live.wait(300)
    result = live.forecasts(store, start - 1800.0)
    fc = result.forecasts["lawn"]
    assert [(e["event"], e["source"], e["occurrences"]) for e in fc.events] == [
        ("home match 3", "history", 2)]
    assert fc.as_dict()["events"][0]["series"] == "home-match"
    assert live.status()["events"][2]["source"] == "history"
    plan = plan_staffing(site, result.forecasts)
    assert plan.as_dict()["events"][0]["source"] == "history"
    store.close()


def test_the_debrief_lists_the_events_and_where_their_crowd_came_from(stored) -> None:
    from types import SimpleNamespace

    from crowdsafe.report.compute import event_rows
    from crowdsafe.report.render import _events

    store, days = stored
    site = series_site()
    rows = event_rows(store, site, float(days[0].ts[0]), float(days[2].ts[-1]))
    # As known before each match's doors: nothing stored before the first, one and two after.
    assert [(r.event, r.source, r.occurrences) for r in rows] == [
        ("home match 1", "attendance", 0), ("home match 2", "history", 1), ("home match 3", "history", 2)]
    html = _events(SimpleNamespace(events=rows))
    assert "Events the forecasts included" in html and "2 earlier occurrence(s) of home-match" in html
