"""Live forecasts from a real SQLite store: refresh per new minute, stale zones, background fit,
and the runner's periodic step feeding the capacity_forecast alert."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from crowdsafe.forecast import ZoneForecaster
from crowdsafe.forecast.alerts import forecast_metrics
from crowdsafe.forecast.live import (
    ForecastNotReady,
    ForecastStep,
    ForecastUnavailable,
    LiveForecasts,
    default_method,
    forecast_zones,
)
from crowdsafe.forecast.schedule import site_events
from crowdsafe.safety.alerts import AlertEngine
from crowdsafe.safety.rules import FORECAST_CAPACITY_METRIC, forecast_alert_rules
from crowdsafe.store import open_store
from tests.support.forecast_support import event_site, fill_until, load, quick_fit

DOORS = 1_779_999_960.0  # a whole minute of a fixed evening: forecasts are asked "as of" times in it


@pytest.fixture
def env(tmp_path):
    site = load(event_site(tmp_path, DOORS))
    store = open_store(tmp_path / "s.sqlite")
    yield {"site": site, "store": store, "model": quick_fit(site)}
    store.close()


def test_forecast_zones_equals_the_forecaster_on_raw_readings_and_skips_stale_zones(env):
    site, store, model = env["site"], env["store"], env["model"]
    now = DOORS + 645  # the last simulated reading is at DOORS + 600
    rows = fill_until(store, site, now)
    # Sub-minute readings too: the store's one-minute means must equal the forecaster's own buckets.
    extra = [{"zone_id": "lawn", "ts": now - 30.0, "count": 40.0}, {"zone_id": "lawn", "ts": now - 10.0,
                                                                     "count": 44.0}]
    store.write("zone_readings", extra)
    got = forecast_zones(store, site, now, model=model)
    assert set(got) == {"walkway", "lawn", "forecourt"}
    lawn = rows["lawn"] + extra
    ref = ZoneForecaster(model, "lawn").forecast([r["ts"] for r in lawn], [r["count"] for r in lawn])
    assert got["lawn"].issued_ts == ref.issued_ts == DOORS + 600
    assert got["lawn"].last_count == pytest.approx(np.mean([rows["lawn"][-1]["count"], 40.0, 44.0]))
    assert got["lawn"].mean == pytest.approx(ref.mean) and got["lawn"].hi95 == pytest.approx(ref.hi95)
    # Eleven minutes later with no new readings: every zone is stale, none is forecast.
    assert forecast_zones(store, site, now + 11.5 * 60, model=model) == {}
    # A zone with readings only after "now" is not forecast from its future.
    assert forecast_zones(store, site, DOORS - 4 * 3600, model=model) == {}


def test_live_forecasts_fit_in_the_background_and_refresh_per_new_minute(env):
    site, store, model = env["site"], env["store"], env["model"]
    release = threading.Event()

    def slow_fit(_site, _method, _seed):
        release.wait(10)
        return model

    live = LiveForecasts(site, "profile", fit=slow_fit)
    assert live.status()["ready"] is False
    with pytest.raises(ForecastNotReady, match="being fitted"):
        live.forecasts(store, DOORS)
    release.set()
    assert live.wait(10) and live.status()["ready"] and live.status()["fit_seconds"] is not None
    now = DOORS + 1200
    fill_until(store, site, now)
    first = live.forecasts(store, now)
    assert live.forecasts(store, now + 5) is first  # same minute, no new readings: cached
    store.write("zone_readings", [{"zone_id": "lawn", "ts": now + 60, "count": 500.0}])
    second = live.forecasts(store, now + 61)
    assert second is not first
    assert second.forecasts["lawn"].last_count == 500.0
    assert second.forecasts["lawn"].issued_ts == first.forecasts["lawn"].issued_ts + 60


def test_a_failed_fit_is_reported_not_lost(env):
    def broken(_site, _method, _seed):
        raise ValueError("need at least one calibration day")

    live = LiveForecasts(env["site"], "gbm", fit=broken)
    assert live.wait(10) is False
    assert "calibration day" in live.status()["error"]
    with pytest.raises(ForecastUnavailable, match="could not be fitted: need at least one"):
        live.forecasts(env["store"])
    step = ForecastStep(env["store"], env["site"], live=live)
    assert step.maybe_run(DOORS) is None and step.maybe_run(DOORS + 120) is None and step.runs == 0


def test_default_method_never_trained_on_simulated_days(tmp_path):
    """No schedule attendance: persistence; expected attendance: the schedule's arrival curve."""
    assert default_method() == "persistence"
    site = load(event_site(tmp_path, DOORS, lawn_capacity=150, attendance=400))
    assert default_method(site) == ("profile" if any(e.expected_attendance for e in site.schedule)
                                    else "persistence")


def test_forecast_step_raises_capacity_forecast_before_the_zone_fills(tmp_path):
    """The lawn is given a capacity the show will exceed: the alert must come before the count does."""
    site = load(event_site(tmp_path, DOORS, lawn_capacity=150, attendance=400))
    store = open_store(tmp_path / "s.sqlite")
    model = quick_fit(site)
    live = LiveForecasts(site, "profile", fit=lambda *_: model)
    engine = AlertEngine(forecast_alert_rules())
    raised: list[tuple[float, float]] = []

    def alert(subject, metric, ts, value):
        for a in engine.update(subject, metric, ts, value):
            if a.state == "raised" and a.subject == "lawn":
                raised.append((ts, a.value))

    step = ForecastStep(store, site, every_s=60, alert=alert, live=live)
    assert live.wait(10)
    rows = fill_until(store, site, DOORS + 3 * 3600, seed=8)
    lawn = {r["ts"]: r["count"] for r in rows["lawn"]}
    first_full = min(ts for ts, c in lawn.items() if c >= 150)
    now = DOORS - 1800
    runs = 0
    while now < first_full and not raised:
        out = step.maybe_run(now)
        runs += out is not None
        now += 30  # the runner calls often; the step runs only once a minute
    assert raised, "no capacity_forecast alert before the lawn reached its capacity"
    ts, value = raised[0]
    assert value >= 100 and first_full - ts >= 5 * 60  # at least five minutes of warning
    assert runs == step.runs and step.latest
    store.close()


def test_forecast_metrics_take_the_peak_upper_bound_within_30_minutes(env):
    site, model = env["site"], env["model"]
    fc = ZoneForecaster(model, "walkway").forecast(np.arange(30) * 60.0 + DOORS, np.full(30, 100.0))
    metrics = dict(((z, m), v) for z, m, v in forecast_metrics(site, {"walkway": fc}))
    k = [i for i, h in enumerate(fc.horizons) if h <= 30]
    peak = max(fc.hi80[i] for i in k)
    assert metrics[("walkway", FORECAST_CAPACITY_METRIC)] == pytest.approx(100 * peak / 250)
    assert forecast_metrics(site, {"forecourt": fc}) == []  # no capacity, no metric


def test_forecast_zones_follow_the_event_schedule(env):
    """Shortly before the start the lawn is forecast to fill: the schedule, not the last count."""
    site, store, model = env["site"], env["store"], env["model"]
    event = site_events(site)[0]
    now = event.doors_ts + 300
    fill_until(store, site, now)
    fc = forecast_zones(store, site, now, model=model)["lawn"]
    k60 = fc.horizons.index(60)
    assert fc.mean[k60] > 3 * max(fc.last_count, 10.0)
