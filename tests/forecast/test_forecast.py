"""Forecast: synthetic days, schedule awareness, skill over naive, honest intervals, CLI."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import ScheduleEvent, SiteError, load_site, parse_site
from crowdsafe.forecast import (
    Forecast,
    ZoneForecaster,
    backtest,
    fit_site_model,
    resample_minutes,
    simulate_day,
)
from crowdsafe.forecast.model import CLIP_FACTOR
from crowdsafe.forecast.schedule import schedule_clock, site_events, site_profile
from crowdsafe.forecast.simulate_day import with_schedule

pytest.importorskip("sklearn", reason="the gbm forecast needs crowdsafe[forecast] (scikit-learn)")

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


@pytest.fixture(scope="module")
def site():
    return with_schedule(load_site(DEMO))


@pytest.fixture(scope="module")
def gbm(site):
    return fit_site_model(site, "gbm", train_days=6, calib_days=4, seed=500)


def test_simulated_day_is_seeded_and_plausible(site):
    a, b = simulate_day(site, seed=3), simulate_day(site, seed=3)
    assert np.array_equal(a.observed["lawn"], b.observed["lawn"])
    assert not np.array_equal(a.observed["lawn"], simulate_day(site, seed=4).observed["lawn"])
    lawn = a.truth["lawn"]
    event = site_events(a.site)[0]
    at = lambda ts: int((ts - a.ts[0]) // 60)  # noqa: E731
    # Empty before the doors, full during the show, nearly empty an hour after the end.
    assert lawn[at(event.doors_ts) - 10] < 5
    assert lawn[at(event.start_ts) + 30] > 250
    assert lawn[-1] < 0.1 * lawn.max()
    # The gate queue (forecourt) builds before the doors open and drains after.
    queue = a.truth["forecourt"]
    assert queue[at(event.doors_ts) - 1] > queue[at(event.doors_ts) + 20]
    # Counter noise is multiplicative ~10 %.
    busy = lawn > 100
    ratio = a.observed["lawn"][busy] / lawn[busy]
    assert 0.05 < np.std(np.log(ratio)) < 0.15


def test_schedule_clock_and_profile(site):
    events = site_events(site)
    ev = events[0]
    clock = schedule_clock(events, np.array([ev.start_ts - 600, ev.end_ts + 120]))
    assert clock[0, 1] == pytest.approx(-10.0) and clock[1, 4] == pytest.approx(2.0)
    prof = site_profile(site)
    assert prof.at("lawn", ev.start_ts + 1800) > 10 * prof.at("lawn", ev.doors_ts - 1800)


def test_schedule_validation():
    square = [[0, 0], [1, 0], [1, 1], [0, 1]]
    base = {"name": "s", "cameras": [{"id": "c", "source": "x.mp4",
                                      "calibration": {"image_points": square, "ground_points": square}}]}
    bad = {**base, "schedule": [{"name": "e", "start": "2026-06-01T19:00:00",
                                 "doors_open": "2026-06-01T20:00:00"}]}
    with pytest.raises(SiteError, match="doors_open"):
        parse_site(bad)
    bad = {**base, "schedule": [{"name": "e", "start": "2026-06-01T19:00:00", "end": "2026-06-01T21:00:00",
                                 "breaks": [["2026-06-01T20:50:00", "2026-06-01T21:10:00"]]}]}
    with pytest.raises(SiteError, match="break"):
        parse_site(bad)
    ok = parse_site({**base, "schedule": [{"name": "e", "start": "2026-06-01T19:00:00+02:00"}]})
    assert ScheduleEvent.epoch(ok.schedule[0].start) == pytest.approx(1780333200.0)


def test_gbm_beats_naive_at_30_min_with_honest_intervals(site):
    result = backtest(site, days=3, seed=11, methods=["gbm"], train_days=6, calib_days=8, every_min=5)
    m30 = result.metrics["gbm"][30]
    assert m30["mase"] < 0.8  # the goal: against the seasonal naive (previous event day) at 30 min
    assert m30["rmae_naive"] < 0.8  # and against the last one-minute reading
    for h in (5, 15, 30, 60):
        cov = result.metrics["gbm"][h]
        # Three test days are few (residuals within a day are correlated): a loose tolerance here,
        # the 85-95 % goal for the 90 % interval is checked on the longer backtest in the README.
        assert abs(cov["cover80"] - 0.80) < 0.08, (h, cov)
        assert abs(cov["cover90"] - 0.90) < 0.07, (h, cov)
        assert abs(cov["cover95"] - 0.95) < 0.06, (h, cov)
    assert result.metrics["naive"][30]["rmae_naive"] == pytest.approx(1.0)
    assert result.metrics["seasonal_naive"][30]["mase"] == pytest.approx(1.0)


def test_ingress_ramp_forecast_before_it_shows(site, gbm):
    """Before the doors open the lawn is empty; the forecast must already see the crowd coming."""
    day = simulate_day(site, seed=21)
    event = site_events(day.site)[0]
    upto = day.ts <= event.doors_ts - 300
    fc = ZoneForecaster(gbm, "lawn").forecast(day.ts[upto], day.observed["lawn"][upto])
    assert fc.last_count < 10
    k60 = fc.horizons.index(60)
    assert fc.mean[k60] > 80
    assert fc.hi80[k60] > fc.mean[k60] > fc.lo80[k60] >= 0
    blind = ZoneForecaster(fit_site_model(site, "naive", train_days=1, calib_days=2, seed=500), "lawn")
    assert blind.forecast(day.ts[upto], day.observed["lawn"][upto]).mean[k60] < 10


def test_forecast_shape_clip_and_refresh(site, gbm):
    day = simulate_day(site, seed=22)
    fz = ZoneForecaster(gbm, "walkway")
    fz.update(day.ts[:100], day.observed["walkway"][:100])
    first = fz.forecast()
    fz.update(day.ts[100:130], day.observed["walkway"][100:130])
    second = fz.forecast()
    assert second.issued_ts == first.issued_ts + 30 * 60
    assert isinstance(first, Forecast) and len(first.mean) == len(first.horizons) == 12
    cap = 250 * CLIP_FACTOR
    for f in (first, second):
        assert all(0 <= lo <= m <= hi <= cap + 1e-9 for lo, m, hi in zip(f.lo95, f.mean, f.hi95, strict=True))
        assert all(a <= b + 1e-9 for a, b in zip(f.hi80, f.hi95, strict=True))
        assert all(lo95 <= lo90 <= lo80 and hi80 <= hi90 <= hi95 for lo95, lo90, lo80, hi80, hi90, hi95
                   in zip(f.lo95, f.lo90, f.lo80, f.hi80, f.hi90, f.hi95, strict=True))
    d = first.as_dict()
    assert set(d) >= {"zone_id", "issued_ts", "horizons_min", "mean", "lo80", "hi80", "lo90", "hi90", "lo95",
                      "hi95"}
    json.dumps(d)


def test_resample_minutes_averages_and_fills_short_gaps():
    ts = [0, 30, 60, 200, 260]  # minute 0 twice, minute 1, gap at 2, minutes 3 and 4
    grid, y = resample_minutes(ts, [10, 20, 30, 40, 50])
    assert grid.tolist() == [0, 60, 120, 180, 240]
    assert y.tolist() == [15, 30, 30, 40, 50]
    grid, y = resample_minutes([0, 60, 60 * 30, 60 * 31], [1, 2, 3, 4])  # a 28-min gap: start after it
    assert grid.tolist() == [1800, 1860] and y.tolist() == [3, 4]


def test_backtest_cli_json(tmp_path):
    out = tmp_path / "bt.json"
    res = CliRunner().invoke(app, ["forecast", "backtest", "--days", "1", "--train-days", "2",
                                   "--calib-days", "2", "--every", "15", "--methods", "naive,profile",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["days"] == 1 and data["horizons"] == [5, 15, 30, 60]
    assert set(data["metrics"]) == {"naive", "profile", "seasonal_naive"}
    row = data["metrics"]["profile"]["30"]
    assert {"mae", "mase", "rmae_naive", "cover80", "cover90", "cover95"} <= set(row)
    assert "MASE" in res.output
