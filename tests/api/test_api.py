"""The API against a temporary SQLite store filled with realistic readings for the demo site."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from crowdsafe.api import ApiSettings, RuntimeStats, create_app, serve_in_thread
from crowdsafe.api.events import EventHub, Subscriber
from crowdsafe.store import Store, StoreError
from tests.support.api_support import demo_env, demo_site, zone_row

NOW = time.time()


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return demo_env(tmp_path, NOW)


def settings_for(env: dict, **kw: object) -> ApiSettings:
    return ApiSettings(site_file=env["site_file"], state_dir=env["state"], **kw)  # type: ignore[arg-type]


@pytest.fixture
def client(env: dict):
    app = create_app(settings_for(env, auth_fail_limit=1000))
    with TestClient(app, headers={"Authorization": "Bearer " + env["tokens"]["admin"]}) as c:
        yield c
    env["store"].close()


def auth(env: dict, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + env["tokens"][role]}


# -- resources ------------------------------------------------------------------------------
def test_health_needs_no_token_and_says_nothing_about_the_crowd(client):
    r = client.get("/health", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "store": True}


def test_site_has_polygons_lines_footprints_and_no_source_urls(client):
    site = client.get("/api/site").json()
    assert site["name"] == "PETS 2009 campus (demo)"
    assert [z["id"] for z in site["zones"]] == ["walkway", "lawn", "forecourt"]
    walkway = site["zones"][0]
    assert walkway["capacity"] == 250 and walkway["los_profile"] == "fruin_walkway"
    assert walkway["polygon"][0] == walkway["polygon"][-1] and len(walkway["polygon"]) == 7
    assert [b["label"] for b in walkway["los_bands"]] == list("ABCDEF")
    assert site["lines"][0]["id"] == "east_gate" and site["lines"][0]["in_normal"] == pytest.approx([0, 1])
    cam = site["cameras"][0]
    assert cam["image_size"] == [768, 576] and cam["footprint"]
    # zone outlines in the image lie (mostly) within the frame
    ring = cam["zones_in_image"]["walkway"][0]
    assert all(-50 <= u <= 820 and -50 <= v <= 630 for u, v in ring)
    assert "vtest.avi" not in json.dumps(site)  # camera sources (maybe with passwords) never leave


def test_zones_latest_reading_with_capacity_los_and_risk(client, env):
    env["store"].write("zone_readings", [zone_row(demo_site(), "walkway", NOW + 1, 200.0)])
    zones = {z["id"]: z for z in client.get("/api/zones").json()}
    assert set(zones) == {"walkway", "lawn", "forecourt"}
    w = zones["walkway"]["reading"]
    assert w["ts"] == pytest.approx(NOW + 1) and w["count"] == 200.0
    assert w["capacity"] == 250 and w["occupancy_pct"] == 80.0
    assert w["los"] in "ABCDEF" and w["risk"] in {"normal", "slowed", "critical", "dangerous"}
    assert zones["forecourt"]["reading"]["occupancy_pct"] is None  # no capacity configured
    assert zones["lawn"]["reading"]["coverage_pct"] == pytest.approx(47.6)
    # the count's interval, and the same interval in people per m²
    assert w["count_low"] < w["count"] < w["count_high"]
    assert w["density_low"] == pytest.approx(w["density"] * w["count_low"] / w["count"], rel=1e-3)
    assert w["density_high"] == pytest.approx(w["density"] * w["count_high"] / w["count"], rel=1e-3)


def test_readings_of_unconfigured_zones_are_not_shown(client, env):
    env["store"].write("zone_readings", [{"zone_id": "ghost", "ts": NOW, "count": 5.0}])
    assert "ghost" not in {z["id"] for z in client.get("/api/zones").json()}
    assert client.get("/api/zones/ghost/history").status_code == 404
    assert "ghost" not in client.get("/metrics").text


def test_zone_history_is_bucketed(client):
    r = client.get("/api/zones/walkway/history", params={"start": NOW - 3600, "end": NOW, "resolution": 600})
    assert r.status_code == 200
    h = r.json()
    assert h["resolution_s"] == 600 and h["capacity"] == 250 and h["area_m2"] > 0
    assert 6 <= len(h["points"]) <= 7
    for p in h["points"]:
        assert p["count_min"] <= p["count"] <= p["count_max"]
        assert p["density"] > 0
    assert [p["ts"] for p in h["points"]] == sorted(p["ts"] for p in h["points"])
    # default range: the last hour in about 360 buckets
    d = client.get("/api/zones/walkway/history").json()
    assert d["end"] - d["start"] == pytest.approx(3600) and d["resolution_s"] == pytest.approx(10)


def test_lines_latest_and_history(client):
    lines = client.get("/api/lines").json()
    assert lines[0]["id"] == "east_gate" and lines[0]["reading"]["flow_pmm"] > 0
    h = client.get("/api/lines/east_gate/history", params={"start": NOW - 1800, "end": NOW,
                                                            "resolution": 300}).json()
    assert len(h["points"]) in (6, 7)
    assert all(p["in_count"] > 0 and p["flow_pmm"] > 0 for p in h["points"])
    assert client.get("/api/lines/nope/history").status_code == 404


def test_line_totals_run_since_the_event_began(client, env):
    """Running totals in and out (issue 16): the sum of every reading since doors opened."""
    rows = env["store"].query("line_readings", "east_gate")
    totals = client.get("/api/lines").json()[0]["totals"]
    day = [r for r in rows if r["ts"] >= totals["since_ts"]]
    assert totals["since"] == "last 24 h" and totals["since_ts"] == pytest.approx(time.time() - 86400, abs=60)
    assert totals["in"] == pytest.approx(sum(r["in_count"] for r in day), abs=0.1)
    assert totals["out"] == pytest.approx(sum(r["out_count"] for r in day), abs=0.1) and totals["out"] > 0
    doors, start = _iso(NOW - 1800), _iso(NOW - 600)
    text = env["site_file"].read_text() + (
        f"schedule:\n  - {{name: evening show, doors_open: {doors}, start: {start}}}\n")
    env["site_file"].write_text(text)
    assert client.post("/api/site/reload").status_code == 200
    totals = client.get("/api/lines").json()[0]["totals"]
    assert totals["since"] == "evening show" and totals["since_ts"] == pytest.approx(NOW - 1800, abs=1)
    recent = [r for r in rows if r["ts"] >= totals["since_ts"]]  # the server's own boundary
    assert totals["in"] == pytest.approx(sum(r["in_count"] for r in recent), abs=0.1)


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_cameras_health_and_background(client, env):
    cams = client.get("/api/cameras").json()
    assert cams[0]["id"] == "view001" and cams[0]["has_background"] is True
    assert cams[0]["health"]["status"] == "up" and cams[0]["health"]["fps"] == 7.5
    r = client.get("/api/cameras/view001/background.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8"
    (env["state"] / "backgrounds" / "view001.jpg").unlink()
    assert client.get("/api/cameras/view001/background.jpg").status_code == 404
    assert client.get("/api/cameras").json()[0]["has_background"] is False


@pytest.mark.parametrize("path", [
    "/api/cameras/nope/background.jpg",
    "/api/cameras/..%2Ftokens.json%00/background.jpg",
    "/api/cameras/..%2F..%2Fcrowdsafe.sqlite/background.jpg",
    "/api/cameras/%2E%2E/background.jpg",
    "/api/cameras/view001%2F..%2F..%2Ftokens/background.jpg",
])
def test_background_path_traversal_is_impossible(client, env, path):
    (env["state"] / "tokens.jpg").write_bytes(b"secret")
    r = client.get(path)
    assert r.status_code == 404
    assert b"secret" not in r.content


def test_alerts_list_filter_and_acknowledge(client, env):
    alerts = client.get("/api/alerts").json()
    assert [a["state"] for a in alerts] == ["raised", "acknowledged", "cleared"]  # newest first
    assert [a["alert_id"] for a in client.get("/api/alerts", params={"state": "raised"}).json()] == [
        "a-forecourt-risk"]
    r = client.post("/api/alerts/a-forecourt-risk/acknowledge", headers=auth(env, "operator"))
    assert r.status_code == 200
    assert r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "operator-1"
    assert client.post("/api/alerts/a-forecourt-risk/acknowledge").status_code == 409
    assert client.post("/api/alerts/a-lawn-surge/acknowledge").status_code == 409
    assert client.post("/api/alerts/nope/acknowledge").status_code == 404


def test_acknowledge_takes_an_optional_note(client, env):
    env["store"].save_alert({"alert_id": "noted", "rule": "busy", "subject": "walkway", "severity": "info",
                             "state": "raised", "raised_ts": NOW, "value": 3.0, "message": "busy"})
    r = client.post("/api/alerts/noted/acknowledge", json={"note": "  two stewards sent  "},
                    headers=auth(env, "operator"))
    assert r.status_code == 200 and r.json()["note"] == "two stewards sent"
    assert r.json()["occurrences"] == 1
    env["store"].save_alert({"alert_id": "long", "rule": "busy", "subject": "walkway", "severity": "info",
                             "state": "raised", "raised_ts": NOW, "value": 3.0, "message": "busy"})
    assert client.post("/api/alerts/long/acknowledge", json={"note": "x" * 501}).status_code == 422
    assert client.post("/api/alerts/long/acknowledge", json={"nots": "typo"}).status_code == 422


def test_me(client, env):
    assert client.get("/api/me", headers=auth(env, "viewer")).json() == {"name": "viewer-1", "role": "viewer"}


# -- hostile input ----------------------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "start=abc", "end=yesterday", "resolution=fast", "resolution=0", "resolution=-5", "resolution=1e300",
    "resolution=nan", "start=nan", "end=inf", "start=-inf", f"start={NOW}&end={NOW - 10}",
    f"start={NOW}&end={NOW}", "start=0&end=1e20", "start=-5", f"start=0&end={NOW}",
    f"start={NOW - 3600}&end={NOW}&resolution=0.001", f"start={NOW - 60}&end={NOW}&resolution=1e-300",
    "resolution=" + "9" * 400, "start=" + "1" * 5000,
])
@pytest.mark.parametrize("path", ["/api/zones/walkway/history", "/api/lines/east_gate/history"])
def test_hostile_time_params_are_4xx(client, path, query):
    r = client.get(f"{path}?{query}")
    assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize("path", [
    "/api/zones/" + "x" * 200 + "/history", "/api/zones/%00/history", "/api/zones/%F0%9F%92%A5/history",
    "/api/zones/walkway%27%20OR%201=1--/history", "/api/lines/%2E%2E/history", "/api/alerts?state=open",
    "/api/alerts?limit=0", "/api/alerts?limit=999999999999", "/api/alerts?limit=x",
    "/api/nope", "/static/..%2F..%2Fpyproject.toml",
    "/static/app.py",
])
def test_hostile_ids_are_4xx(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500, r.text


def test_hostile_alert_ids_are_4xx(client):
    for alert_id in ["x" * 100, "%00", "'; DROP TABLE alerts;--", "%F0%9F%92%A5"]:
        r = client.post(f"/api/alerts/{alert_id}/acknowledge")
        assert 400 <= r.status_code < 500
    assert len(client.get("/api/alerts").json()) == 3


def test_body_limit_413(client, env):
    big = b"x" * (64 * 1024 + 1)
    r = client.post("/api/alerts/a-forecourt-risk/acknowledge", content=big, headers=auth(env, "operator"))
    assert r.status_code == 413

    def chunks():
        for _ in range(20):
            yield b"y" * 8192

    r = client.post("/api/site/reload", content=chunks())
    assert r.status_code == 413
    r = client.post("/api/site/reload", content=big, headers={"Authorization": ""})
    assert r.status_code == 413  # before auth: a large body is never read
    assert client.post("/api/alerts/a-forecourt-risk/acknowledge", content=b"{}",
                       headers=auth(env, "operator")).status_code == 200


def test_store_failure_is_503_not_500(client, monkeypatch):
    app_state = client.app.state.crowdsafe

    def broken(*_a, **_k):
        raise StoreError("database is locked")

    monkeypatch.setattr(app_state.store, "latest", broken)
    r = client.get("/api/zones")
    assert r.status_code == 503 and "locked" not in r.text
    assert client.get("/health").json() == {"status": "degraded", "store": False}


# -- site reload ------------------------------------------------------------------------------
def test_site_reload_applies_and_keeps_old_site_on_error(client, env):
    text = env["site_file"].read_text().replace("capacity: 250", "capacity: 300")
    env["site_file"].write_text(text)
    r = client.post("/api/site/reload")
    assert r.status_code == 200 and r.json()["zones"] == 3
    assert client.get("/api/zones").json()[0]["capacity"] == 300
    env["site_file"].write_text(text.replace("capacity: 300", "capacity: -1"))
    r = client.post("/api/site/reload")
    assert r.status_code == 422
    assert any("zones[0].capacity" in p for p in r.json()["detail"]["problems"])
    assert client.get("/api/zones").json()[0]["capacity"] == 300


# -- metrics, docs, pages, headers ------------------------------------------------------------
def test_metrics_are_bounded_to_configured_ids(client, env):
    env["store"].write("camera_health", [{"camera_id": "rogue", "ts": NOW, "status": "up", "errors": 0}])
    for i in range(5):
        client.get(f"/api/random-{i}")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in ['crowdsafe_zone_count{zone="walkway"}', 'crowdsafe_zone_density{zone="lawn"}',
                   'crowdsafe_zone_capacity{zone="walkway"} 250.0',
                   'crowdsafe_camera_up{camera="view001"} 1.0', 'crowdsafe_camera_fps{camera="view001"} 7.5',
                   'crowdsafe_line_flow_pmm{line="east_gate"}', "crowdsafe_sse_clients 0.0",
                   'crowdsafe_alerts_open{severity="critical",state="raised"} 1.0',
                   'crowdsafe_http_requests_total{route="other",status="4xx"}']:
        assert needle in text, needle
    assert "rogue" not in text and "random-" not in text
    assert "crowdsafe_pipeline_latency_seconds" not in text  # no runner in this process


def test_latest_readings_come_from_the_runners_snapshot_without_the_store(env, monkeypatch):
    """Beside a runner, /api/zones and /api/lines answer from memory (issue 16: the API must not
    starve counting); without a snapshot yet, the store answers."""
    site = demo_site()
    snapshot = {"zone_readings": [zone_row(site, "walkway", NOW + 5, 77.0)],
                "line_readings": [{"line_id": "east_gate", "ts": NOW + 5, "period_s": 1.0, "in_count": 2.0,
                                   "out_count": 1.0, "flow_pmm": 13.3}]}
    provided: dict[str, list] = {}
    app = create_app(settings_for(env, latest_rows=lambda table: provided.get(table)))
    with TestClient(app, headers=auth(env, "viewer")) as c:
        from_store = {z["id"]: z["reading"] for z in c.get("/api/zones").json()}
        assert from_store["walkway"]["count"] != 77.0 and from_store["lawn"] is not None
        provided.update(snapshot)
        monkeypatch.setattr(Store, "latest", lambda self, table: pytest.fail("the store was queried"))
        zones = {z["id"]: z["reading"] for z in c.get("/api/zones").json()}
        assert zones["walkway"]["count"] == 77.0 and zones["lawn"] is None
        assert c.get("/api/lines").json()[0]["reading"]["flow_pmm"] == 13.3


def test_metrics_include_runtime_stats_when_a_runner_provides_them(env):
    stats = RuntimeStats(pipeline_latency_s={"view001": 0.42, "other": 1.0}, queue_depth=2,
                         dropped={"view001": 3})
    app = create_app(settings_for(env, runtime_stats=lambda: stats))
    with TestClient(app, headers=auth(env, "viewer")) as c:
        text = c.get("/metrics").text
    assert 'crowdsafe_pipeline_latency_seconds{camera="view001"} 0.42' in text
    assert "crowdsafe_pipeline_queue_depth 2.0" in text
    assert 'crowdsafe_samples_dropped{camera="view001"} 3.0' in text
    assert 'camera="other"' not in text


def test_openapi_docs_and_dashboard_pages(client):
    spec = client.get("/openapi.json").json()
    for path in ["/api/site", "/api/zones", "/api/zones/{zone_id}/history", "/api/lines", "/api/cameras",
                 "/api/alerts", "/api/alerts/{alert_id}/acknowledge", "/api/events", "/metrics", "/health",
                 "/api/cameras/{camera_id}/background.jpg", "/api/site/reload"]:
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    anon = {"Authorization": ""}
    page = client.get("/", headers=anon)
    assert page.status_code == 200 and "crowdsafe" in page.text and "/static/plotly.min.js" in page.text
    assert "cdn" not in page.text.lower()
    docs = client.get("/docs", headers=anon)
    assert docs.status_code == 200 and "/static/swagger-ui-bundle.js" in docs.text
    for name in ["app.js", "map.js", "charts.js", "sse.js", "style.css", "docs.js", "swagger-ui-bundle.js",
                 "swagger-ui.css"]:
        assert client.get(f"/static/{name}", headers=anon).status_code == 200, name
    plotly = client.get("/static/plotly.min.js", headers=anon)
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert "javascript" in plotly.headers["content-type"]


def test_security_headers_and_cors_closed_by_default(client):
    r = client.get("/api/zones", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/api/zones", headers={"Origin": "https://evil.example",
                                                "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_cors_opens_only_for_the_given_origin(env):
    app = create_app(settings_for(env, cors_origins=("https://ops.example",)))
    with TestClient(app) as c:
        ok = c.options("/api/zones", headers={"Origin": "https://ops.example",
                                              "Access-Control-Request-Method": "GET",
                                              "Access-Control-Request-Headers": "authorization"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        bad = c.get("/api/zones", headers={"Origin": "https://evil.example", **auth(env, "viewer")})
        assert "access-control-allow-origin" not in bad.headers


# -- live feed ----------------------------------------------------------------------------------
class SSEReader:
    """Reads an SSE stream in a thread, collecting (event, data) pairs."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self.done = threading.Event()
        self.connected = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=20.0))
        self._thread = threading.Thread(target=self._run, args=(url, token), daemon=True)
        self._thread.start()

    def _run(self, url: str, token: str) -> None:
        try:
            with self._client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status_code
                name = "message"
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        self.events.append((name, json.loads(line[5:])))
                        if name == "hello":
                            self.connected.set()
        except httpx.HTTPError:
            pass
        finally:
            self.done.set()
            self.connected.set()

    def wait_for(self, pred, timeout: float = 10.0) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in list(self.events):
                if pred(ev):
                    return ev
            time.sleep(0.05)
        raise AssertionError(f"no matching event in {self.events}")

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def live(env):
    handle = serve_in_thread(settings_for(env, port=0, sse_poll_s=0.1, sse_heartbeat_s=0.5))
    yield handle
    handle.stop()
    env["store"].close()


def test_sse_delivers_new_readings_and_alert_changes(live, env):
    reader = SSEReader(f"{live.url}/api/events", env["tokens"]["viewer"])
    assert reader.connected.wait(10) and reader.status == 200
    store = env["store"]
    site = demo_site()
    store.write("zone_readings", [{"zone_id": "ghost", "ts": NOW + 5, "count": 1.0}])
    store.write("zone_readings", [zone_row(site, "walkway", NOW + 5, 123.0)])
    store.write("line_readings", [{"line_id": "east_gate", "ts": NOW + 5, "period_s": 10.0, "in_count": 4.0,
                                   "out_count": 2.0, "flow_pmm": 2.7}])
    _, zone = reader.wait_for(lambda e: e[0] == "zone")
    assert zone["zone_id"] == "walkway" and zone["count"] == 123.0 and zone["capacity"] == 250
    _, line = reader.wait_for(lambda e: e[0] == "line")
    assert line["in_count"] == 4.0
    # a row arriving late, with a ts older than the newest seen, still arrives
    store.write("zone_readings", [zone_row(site, "lawn", NOW + 3, 77.0)])
    reader.wait_for(lambda e: e[0] == "zone" and e[1]["zone_id"] == "lawn" and e[1]["count"] == 77.0)
    # an acknowledgement made through the API is pushed to every client
    r = httpx.post(f"{live.url}/api/alerts/a-forecourt-risk/acknowledge", headers=auth(env, "operator"))
    assert r.status_code == 200
    _, alert = reader.wait_for(lambda e: e[0] == "alert")
    assert alert["alert_id"] == "a-forecourt-risk" and alert["state"] == "acknowledged"
    time.sleep(0.5)
    assert not any(e[1].get("zone_id") == "ghost" for e in reader.events)
    assert len([e for e in reader.events if e[0] == "zone" and e[1]["zone_id"] == "walkway"]) == 1
    # old rows were not replayed to the new client
    assert all(e[1].get("ts", NOW + 10) > NOW for e in reader.events if e[0] in ("zone", "line"))
    reader.close()


def test_sse_stream_ends_on_shutdown(env):
    handle = serve_in_thread(settings_for(env, port=0, sse_poll_s=0.1))
    reader = SSEReader(f"{handle.url}/api/events", env["tokens"]["viewer"])
    assert reader.connected.wait(10)
    t0 = time.monotonic()
    handle.stop()
    assert reader.done.wait(5)
    assert time.monotonic() - t0 < 4
    assert not handle.thread.is_alive()
    reader.close()
    env["store"].close()


def test_sse_needs_a_token_and_limits_clients(env):
    app = create_app(settings_for(env, sse_max_clients=0))
    with TestClient(app) as c:
        assert c.get("/api/events").status_code == 401
        assert c.get("/api/events?token=" + env["tokens"]["viewer"]).status_code == 401  # header only
        r = c.get("/api/events", headers=auth(env, "viewer"))
        assert r.status_code == 503 and "retry-after" in r.headers


def _hub(settings: ApiSettings) -> EventHub:
    return EventHub(lambda: type("S", (), {"settings": settings})())  # type: ignore[arg-type, return-value]


def _refused(hub: EventHub, token: str, client: str, role: str) -> HTTPException:
    with pytest.raises(HTTPException) as exc:
        hub.subscribe(token, client, role)
    return exc.value


def test_sse_streams_are_shared_out_per_token_client_and_role():
    """One token cannot take the pool, and the operator reserve applies to every cap (issues 16, 26)."""
    settings = ApiSettings(site_file=Path("x.yaml"), sse_max_clients=8, sse_max_per_token=3,
                           sse_max_per_client=5, sse_operator_reserve=0.25)
    hub = _hub(settings)
    for _ in range(2):
        hub.subscribe("kiosk", "10.0.0.1", "viewer")
    exc = _refused(hub, "kiosk", "10.0.0.1", "viewer")  # a viewer token: 2 of its 3 (one reserved)
    assert exc.status_code == 429 and "this token" in exc.detail and " 2 " in exc.detail
    hub.subscribe("wall", "10.0.0.1", "viewer")
    exc = _refused(hub, "wall", "10.0.0.1", "viewer")  # viewers at one address: 3 of its 5
    assert exc.status_code == 429 and "this address" in exc.detail and " 3 " in exc.detail
    hub.subscribe("control-room", "10.0.0.1", "operator")  # the operator behind the same address
    hub.subscribe("wall", "10.0.0.2", "viewer")
    hub.subscribe("phone", "10.0.0.3", "viewer")
    hub.subscribe("phone", "10.0.0.3", "viewer")
    exc = _refused(hub, "tv", "10.0.0.4", "viewer")  # viewers have used their 6 of 8; 2 are reserved
    assert exc.status_code == 503
    hub.subscribe("admin", "10.0.0.9", "admin")  # operators and admins still connect
    exc = _refused(hub, "control-room", "10.0.0.9", "operator")  # now the whole pool is used
    assert exc.status_code == 503
    for sub in [s for s in hub.subscribers if s.token == "kiosk"]:
        hub.unsubscribe(sub)
    hub.subscribe("tv", "10.0.0.4", "viewer")  # a freed slot is usable again


def test_no_mix_of_viewer_tokens_at_one_address_locks_the_operator_out():
    """Issue 26: two (or five) viewer tokens from one address, behind a proxy, filled its 16 streams."""
    settings = ApiSettings(site_file=Path("x.yaml"))  # the shipped caps and reserve
    hub = _hub(settings)
    held = 0
    for token in ("viewer-1", "viewer-2", "viewer-3", "viewer-4", "viewer-5"):
        for _ in range(settings.sse_max_per_token):
            try:
                hub.subscribe(token, "203.0.113.7", "viewer")
                held += 1
            except HTTPException as exc:
                assert exc.status_code == 429
                break
    assert held == 12  # three quarters of the address's 16
    for _ in range(4):  # the reserved quarter is the operators'
        hub.subscribe("control-room", "203.0.113.7", "operator")
    exc = _refused(hub, "control-room", "203.0.113.7", "operator")
    assert exc.status_code == 429 and "16" in exc.detail
    # viewers from many addresses stop at three quarters of the pool; an operator still connects
    hub = _hub(settings)
    for i in range(settings.sse_max_clients):
        try:
            hub.subscribe(f"viewer-{i}", f"10.0.{i // 250}.{i % 250}", "viewer")
        except HTTPException as exc:
            assert exc.status_code == 503
            break
    assert len(hub.subscribers) == 192
    hub.subscribe("control-room", "10.9.9.9", "operator")


def test_api_worker_threads_are_bounded(env):
    """A burst of requests queues for a few threads instead of taking the cores counting needs."""
    import anyio.to_thread

    with TestClient(create_app(settings_for(env, api_threads=3))) as c:
        assert c.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens) == 3
        assert c.get("/health").status_code == 200


def test_slow_sse_client_is_cut_off_not_given_holes():
    async def scenario() -> None:
        hub = EventHub(lambda: None)  # type: ignore[arg-type, return-value]
        sub = Subscriber(asyncio.Queue(maxsize=2))
        hub.subscribers.add(sub)
        for i in range(3):
            hub._offer(sub, ("zone", str(i)))
        assert sub.overflowed and hub.clients_dropped == 1 and sub.queue.qsize() == 2
        hub.close()  # the close marker still gets through to end the stream
        assert [sub.queue.get_nowait() for _ in range(2)][-1] == ("", "")

    asyncio.run(scenario())


def test_serve_in_thread_reports_a_taken_port(env):
    first = serve_in_thread(settings_for(env, port=0))
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            serve_in_thread(settings_for(env, port=first.port), start_timeout_s=5)
    finally:
        first.stop()
        env["store"].close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_api_beside_a_runner_runs_nicer_than_the_counting_threads(env):
    """The API thread (and the worker threads it starts) gives way to counting (issue 16)."""
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    handle = serve_in_thread(settings_for(env, port=0, api_nice=5))
    try:
        assert handle.thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, handle.thread.native_id) == min(19, base + 5)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's is kept
    finally:
        handle.stop()
        env["store"].close()
