"""GET /api/forecast, /status, /staffing and /staffing.csv over HTTP (httpx against a real server on
127.0.0.1), on a store holding a simulated event that is happening now; clearance in zone readings."""

from __future__ import annotations

import csv
import io
import math
import threading
import time

import httpx
import pytest

from crowdsafe.api import ApiSettings, serve_in_thread
from crowdsafe.forecast.live import LiveForecasts
from crowdsafe.forecast.staffing import zone_stewards
from crowdsafe.store import open_store
from tests.support.api_support import make_tokens
from tests.support.forecast_support import event_site, fill_until, load, quick_fit

NOW = time.time()
DOORS = NOW - 20 * 60  # the doors opened 20 minutes ago; the show starts in 25


@pytest.fixture
def env(tmp_path):
    """A real server over a store filled up to now; ``use(fit)`` installs the app's forecaster."""
    state = tmp_path / "state"
    state.mkdir()
    site_file = event_site(tmp_path, DOORS)
    site = load(site_file)
    store = open_store(state / "crowdsafe.sqlite")
    rows = fill_until(store, site, NOW)
    tokens = make_tokens(state)
    settings = ApiSettings(site_file=site_file, state_dir=state, site=site, port=0)
    handle = serve_in_thread(settings, store=store)
    api_site = handle.app.state.crowdsafe.site_view.site

    def use(fit=None) -> LiveForecasts:
        """A small real fit by default (the app's own default fits gbm on 22 simulated days)."""
        model = None if fit is not None else quick_fit(api_site)
        live = LiveForecasts(api_site, "profile", fit=fit or (lambda *_: model))
        handle.app.state.crowdsafe_forecasts = live
        return live

    http = {role: httpx.Client(base_url=handle.url, timeout=30, headers={"Authorization": "Bearer " + token})
            for role, token in tokens.items()}
    yield {"handle": handle, "store": store, "site": site, "rows": rows, "http": http, "use": use,
           "url": handle.url, "site_file": site_file, "state": state, "tokens": tokens}
    for c in http.values():
        c.close()
    handle.stop()
    store.close()


def test_forecasts_of_every_zone_with_intervals(env):
    assert env["use"]().wait(300), "the forecast model did not fit"  # minutes on a loaded 2-core machine
    r = env["http"]["viewer"].get("/api/forecast")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "profile" and body["now"] == pytest.approx(time.time(), abs=30)
    zones = {z["zone_id"]: z for z in body["zones"]}
    assert set(zones) == {"walkway", "lawn", "forecourt"}
    newest = max(r["ts"] for r in env["rows"]["lawn"])
    lawn = zones["lawn"]
    assert lawn["issued_ts"] == pytest.approx(math.floor(newest / 60) * 60)
    assert lawn["horizons_min"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    assert lawn["target_ts"][2] == pytest.approx(lawn["issued_ts"] + 15 * 60)
    for z in zones.values():
        for lo95, lo, m, hi, hi95 in zip(z["lo95"], z["lo80"], z["mean"], z["hi80"], z["hi95"], strict=True):
            assert 0 <= lo95 <= lo <= m <= hi <= hi95
    # 25 minutes before the start the crowd is still coming: the lawn grows over the hour.
    assert lawn["mean"][-1] > lawn["mean"][0] > 0
    status = env["http"]["viewer"].get("/api/forecast/status").json()
    assert status["ready"] and status["schedule_aware"] and status["staffing_policy"]


def test_staffing_json_and_csv_agree_and_follow_the_policy(env):
    assert env["use"]().wait(300), "the forecast model did not fit"  # minutes on a loaded 2-core machine
    viewer = env["http"]["viewer"]
    plan = viewer.get("/api/forecast/staffing", params={"slot_minutes": 30}).json()
    assert plan["slot_minutes"] == 30 and plan["bound"] == "hi80"
    assert len(plan["site"]) == 2 and len(plan["zones"]) == 3 * 2
    zones = {z.id: z for z in env["site"].zones}
    for slot in plan["zones"]:
        expected = zone_stewards(env["site"].staffing, zones[slot["zone_id"]], slot["people"], slot["los"])
        assert slot["stewards"] == expected[3]
    for s in plan["site"]:
        assert s["medics"] == max(1, math.ceil(s["people"] / 1000 - 1e-9))
    r = viewer.get("/api/forecast/staffing.csv", params={"slot_minutes": 30})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 * 2 + 2
    by_key = {(row["zone_id"], float(row["slot_start_ts"])): row for row in rows}
    for slot in plan["zones"]:
        assert int(by_key[(slot["zone_id"], slot["slot_start_ts"])]["stewards"]) == slot["stewards"]
    medics = [int(row["medics"]) for row in rows if row["zone_id"] == "*site*"]
    assert medics == [s["medics"] for s in plan["site"]]
    hi95 = viewer.get("/api/forecast/staffing", params={"slot_minutes": 30, "bound": "hi95"}).json()
    assert sum(s["stewards"] for s in hi95["site"]) >= sum(s["stewards"] for s in plan["site"])


def test_auth_validation_and_a_site_without_policy(env, tmp_path):
    assert env["use"]().wait(300), "the forecast model did not fit"  # minutes on a loaded 2-core machine
    anonymous = httpx.get(env["url"] + "/api/forecast", timeout=10)
    assert anonymous.status_code == 401
    viewer = env["http"]["viewer"]
    assert viewer.get("/api/forecast", params={"at": "nan"}).status_code == 422
    assert viewer.get("/api/forecast", params={"at": -5}).status_code == 422
    assert viewer.get("/api/forecast/staffing", params={"slot_minutes": 2}).status_code == 422
    assert viewer.get("/api/forecast/staffing", params={"bound": "max"}).status_code == 422
    # As of an hour before the doors there are no readings: no zone is forecast, and no error.
    assert viewer.get("/api/forecast", params={"at": DOORS - 7200}).json()["zones"] == []
    # The site file without a staffing policy: a clear 404, and the status says so up front.
    state = env["handle"].app.state.crowdsafe
    bare = state.site_view.site.model_copy(update={"staffing": None})
    state.site_view = type(state.site_view)(bare, state.site_view.payload, state.site_view.zone_ids,
                                            state.site_view.line_ids, state.site_view.camera_ids)
    model = quick_fit(bare)
    env["handle"].app.state.crowdsafe_forecasts = LiveForecasts(bare, "profile", fit=lambda *_: model)
    r = viewer.get("/api/forecast/staffing")
    assert r.status_code == 404 and "staffing" in r.json()["detail"]
    assert viewer.get("/api/forecast/status").json()["staffing_policy"] is False
    assert viewer.get("/api/forecast").status_code == 200


def test_503_with_retry_after_while_the_model_fits(env):
    release = threading.Event()
    model = quick_fit(env["handle"].app.state.crowdsafe.site_view.site)

    def slow(*_):
        release.wait(20)
        return model

    live = env["use"](slow)
    viewer = env["http"]["viewer"]
    r = viewer.get("/api/forecast")
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and "being fitted" in r.json()["detail"]
    assert viewer.get("/api/forecast/staffing.csv").status_code == 503
    assert viewer.get("/api/forecast/status").json()["ready"] is False
    release.set()
    assert live.wait(20)
    assert viewer.get("/api/forecast").status_code == 200


def test_the_app_makes_its_own_forecaster_and_a_new_one_after_a_site_reload(env):
    fitted: list[object] = []

    def small_fit(site, method, seed):  # the app's own forecaster, fitting a small model, not gbm on 22 days
        fitted.append(site)
        return quick_fit(site)

    settings = ApiSettings(site_file=env["site_file"], state_dir=env["state"], site=env["site"], port=0,
                           forecast_fit=small_fit)
    handle = serve_in_thread(settings, store=env["store"])
    clients = {role: httpx.Client(base_url=handle.url, timeout=30,
                                  headers={"Authorization": "Bearer " + token})
               for role, token in env["tokens"].items()}
    try:
        state = handle.app.state
        assert clients["viewer"].get("/api/forecast/status").status_code == 200
        first = state.crowdsafe_forecasts
        assert first.wait(30) and clients["viewer"].get("/api/forecast").status_code == 200
        assert fitted == [state.crowdsafe.site_view.site] and first.site is fitted[0]
        r = clients["admin"].post("/api/site/reload")
        assert r.status_code == 200, r.text
        assert clients["viewer"].get("/api/forecast/status").status_code == 200
        second = state.crowdsafe_forecasts
        assert second is not first and second.site is state.crowdsafe.site_view.site
        assert second.wait(30) and fitted[-1] is second.site
    finally:
        for c in clients.values():
            c.close()
        handle.stop()


def test_zone_readings_carry_clearance_time(env):
    store = env["store"]
    store.write("zone_readings", [{"zone_id": "forecourt", "ts": time.time(), "count": 1200.0},
                                  {"zone_id": "lawn", "ts": time.time(), "count": 50.0}])
    zones = {z["id"]: z["reading"] for z in env["http"]["viewer"].get("/api/zones").json()}
    assert zones["forecourt"]["clearance_s"] == pytest.approx(60 * 1200 / (1.8 * 82), abs=0.05)
    assert zones["lawn"]["clearance_s"] is None  # no exits in the site file
    assert zones["walkway"]["clearance_s"] >= 0
