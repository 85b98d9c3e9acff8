"""The local runner on the bundled video with forecasting on: real counts go to the store, the
periodic forecast step reads them back, and its alert and the clearance alerts reach the store."""

from __future__ import annotations

import threading
from pathlib import Path

import crowdsafe.forecast.live as live_module
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter, EveryCamera
from crowdsafe.forecast.live import ForecastStep, LiveForecasts
from crowdsafe.runtime.background import BackgroundPolicy
from crowdsafe.runtime.core import RunnerConfig, RunSummary, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.rules import CLEARANCE_METRIC, FORECAST_CAPACITY_METRIC
from crowdsafe.store.store import open_store
from tests.support.forecast_support import quick_fit
from tests.support.runner import demo_site

#: Test rules that fire on any forecast and any clearance, so a short run shows both paths.
ANY_FORECAST = AlertRule("test_forecast_any", FORECAST_CAPACITY_METRIC, raise_at=0.01, clear_at=0.0)
ANY_CLEARANCE = AlertRule("test_clearance_any", CLEARANCE_METRIC, raise_at=0.01, clear_at=0.0)


def test_runner_forecasts_from_its_store_and_alerts(tmp_path: Path, fast_counter: DensityCounter):
    site_file = demo_site(tmp_path, every="1s")
    prepared = prepare_site(load_site(site_file))
    store = open_store(tmp_path / "s.sqlite")
    config = RunnerConfig(state_dir=tmp_path / "state", duration_s=14, health_every_s=1,
                          background=BackgroundPolicy(min_frames=3),
                          rules=(*prepared.plan.rules, ANY_FORECAST, ANY_CLEARANCE))
    runner = local_runner(prepared, store, EveryCamera(fast_counter), config)
    assert runner.forecast is None  # off unless asked for (crowdsafe run asks: every 60 s)
    # The step the runner builds with forecast_every_s, with a small fit instead of gbm on 22 days.
    model = quick_fit(prepared.site)
    live = LiveForecasts(prepared.site, "profile", fit=lambda *_: model)
    assert live.wait(30)
    runner.forecast = ForecastStep(store, prepared.site, every_s=2, alert=runner.alerts.update, live=live)
    result: dict[str, RunSummary] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", runner.run()), daemon=True)
    thread.start()
    thread.join(90)
    assert not thread.is_alive() and result["summary"].frames_total >= 3
    assert runner.forecast.runs >= 2
    latest = runner.forecast.latest
    assert set(latest) == {"walkway", "lawn", "forecourt"}  # every zone the camera sees has readings
    stored = {r["zone_id"]: r["count"] for r in store.latest("zone_readings")}
    assert latest["walkway"].last_count is not None and latest["walkway"].last_count > 0
    assert abs(latest["walkway"].mean[0] - stored["walkway"]) < 0.5 * stored["walkway"] + 5
    alerts = {(a["rule"], a["subject"]) for a in store.alerts()}
    # Forecast alerts for the zones with a capacity; clearance alerts for the zones with exits.
    assert {("test_forecast_any", "walkway"), ("test_forecast_any", "lawn")} <= alerts
    assert ("test_forecast_any", "forecourt") not in alerts
    assert {("test_clearance_any", "walkway"), ("test_clearance_any", "forecourt")} <= alerts
    assert ("test_clearance_any", "lawn") not in alerts
    store.close()


def test_runner_config_turns_the_step_on(tmp_path: Path, fast_counter: DensityCounter):
    prepared = prepare_site(load_site(demo_site(tmp_path)))
    store = open_store(tmp_path / "s.sqlite")
    model = quick_fit(prepared.site)
    fits: list[str] = []

    def small_fit(site, method, seed):  # what the step's model fit gets, instead of gbm on 22 days
        fits.append(method)
        return model

    runner = local_runner(prepared, store, EveryCamera(fast_counter),
                          RunnerConfig(state_dir=tmp_path / "state", forecast_every_s=60.0,
                                       forecast_fit=small_fit))
    assert isinstance(runner.forecast, ForecastStep) and runner.forecast.every_s == 60.0
    assert runner.forecast.live.wait(30) and fits == [live_module.default_method()]
    rules = {r.name for r in runner.alerts.engine.rules}
    assert {"egress_time", "egress_time_warning", "capacity_forecast"} <= rules
    store.close()
