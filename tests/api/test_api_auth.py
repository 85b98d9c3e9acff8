"""Tokens, roles and throttling: every role against every endpoint, and the token commands."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crowdsafe.api import ApiSettings, create_app
from crowdsafe.api.throttle import AuthThrottle
from crowdsafe.api.tokens import TokenBook, hash_token
from crowdsafe.cli.main import app as cli
from tests.support.api_support import demo_env

NOW = time.time()
ROLES = ["viewer", "operator", "admin"]
# (method, path, least role); the acknowledge target is filled in per call
ENDPOINTS = [
    ("GET", "/api/site", "viewer"), ("GET", "/api/me", "viewer"), ("GET", "/api/zones", "viewer"),
    ("GET", "/api/zones/walkway/history", "viewer"), ("GET", "/api/lines", "viewer"),
    ("GET", "/api/lines/east_gate/history", "viewer"), ("GET", "/api/cameras", "viewer"),
    ("GET", "/api/cameras/view001/background.jpg", "viewer"), ("GET", "/api/alerts", "viewer"),
    ("GET", "/api/alerts?state=raised", "viewer"), ("GET", "/metrics", "viewer"),
    ("GET", "/openapi.json", "viewer"), ("POST", "/api/alerts/{alert}/acknowledge", "operator"),
    ("POST", "/api/site/reload", "admin"),
]
PUBLIC = ["/health", "/", "/docs", "/static/app.js", "/static/plotly.min.js"]


@pytest.fixture
def env(tmp_path: Path) -> dict:
    env = demo_env(tmp_path, NOW)
    yield env
    env["store"].close()


def make_client(env: dict, **kw: object) -> TestClient:
    return TestClient(create_app(ApiSettings(site_file=env["site_file"], state_dir=env["state"], **kw)))


def raise_alert(store, alert_id: str) -> None:
    store.save_alert({"alert_id": alert_id, "rule": "capacity_90", "subject": "walkway",
                      "severity": "warning", "state": "raised", "raised_ts": time.time(), "value": 91.0,
                      "message": "test"})


def call(client: TestClient, env: dict, method: str, path: str, headers: dict, n: list[int]):
    if "{alert}" in path:
        n[0] += 1
        raise_alert(env["store"], f"auth-{n[0]}")
        path = path.format(alert=f"auth-{n[0]}")
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize("method,path,least", ENDPOINTS)
def test_auth_matrix(env, method, path, least):
    n = [0]
    with make_client(env, auth_fail_limit=10_000) as c:
        for who, headers in [("none", {}), ("bad", {"Authorization": "Bearer cs_not-a-real-token"}),
                             ("basic", {"Authorization": "Basic dXNlcjpwYXNz"}),
                             ("empty", {"Authorization": "Bearer "}),
                             ("huge", {"Authorization": "Bearer " + "x" * 10_000})]:
            r = call(c, env, method, path, headers, n)
            assert r.status_code == 401, (who, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        for role in ROLES:
            r = call(c, env, method, path, {"Authorization": "Bearer " + env["tokens"][role]}, n)
            allowed = ROLES.index(role) >= ROLES.index(least)
            if allowed:
                assert r.status_code == 200, (role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, r.status_code, r.text)
                assert least in r.json()["detail"]


@pytest.mark.parametrize("path", PUBLIC)
def test_public_paths_need_no_token(env, path):
    with make_client(env) as c:
        assert c.get(path).status_code == 200


def test_viewer_cannot_acknowledge_operator_can(env):
    raise_alert(env["store"], "ack-me")
    with make_client(env) as c:
        viewer = {"Authorization": "Bearer " + env["tokens"]["viewer"]}
        r = c.post("/api/alerts/ack-me/acknowledge", headers=viewer)
        assert r.status_code == 403
        assert [a for a in c.get("/api/alerts?state=raised", headers={
            "Authorization": "Bearer " + env["tokens"]["viewer"]}).json() if a["alert_id"] == "ack-me"]
        r = c.post("/api/alerts/ack-me/acknowledge",
                   headers={"Authorization": "Bearer " + env["tokens"]["operator"]})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == "operator-1"


def test_revoked_and_new_tokens_apply_without_restart(env):
    book = TokenBook(env["state"] / "tokens.json")
    with make_client(env) as c:
        h = {"Authorization": "Bearer " + env["tokens"]["viewer"]}
        assert c.get("/api/zones", headers=h).status_code == 200
        assert book.revoke("viewer-1")
        assert c.get("/api/zones", headers=h).status_code == 401
        _, token = book.create("operator", "late-shift")
        r = c.get("/api/me", headers={"Authorization": "Bearer " + token})
        assert r.json() == {"name": "late-shift", "role": "operator"}


def test_failed_auth_is_throttled_per_address(env):
    with make_client(env, auth_fail_limit=3, auth_fail_window_s=60) as c:
        good = {"Authorization": "Bearer " + env["tokens"]["viewer"]}
        bad = {"Authorization": "Bearer wrong"}
        assert [c.get("/api/zones", headers=bad).status_code for _ in range(3)] == [401, 401, 401]
        r = c.get("/api/zones", headers=bad)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert c.get("/api/zones").status_code == 429  # no token is a failure too
        assert c.get("/api/zones", headers=good).status_code == 200  # a valid token always passes
        assert c.get("/health").status_code == 200
    other = TestClient(c.app, client=("10.1.2.3", 5000))
    assert other.get("/api/zones", headers=bad).status_code == 401  # another address is unaffected


def test_fifty_bad_requests_never_lock_out_a_valid_token(env):
    """The issue's scenario: an unauthenticated flood from the address a valid user shares."""
    with make_client(env) as c:
        codes = [c.get("/api/zones", headers={"Authorization": f"Bearer cs_wrong{i}"}).status_code
                 for i in range(50)]
        assert set(codes) == {401, 429} and codes[-1] == 429  # the flood itself is throttled
        for role in ROLES:
            h = {"Authorization": "Bearer " + env["tokens"][role]}
            assert c.get("/api/zones", headers=h).status_code == 200  # straight away, same address
        assert c.get("/api/events", headers={"Authorization": "Bearer nope"}).status_code == 429


def test_forwarded_for_is_believed_only_from_trusted_proxies(env):
    bad = {"Authorization": "Bearer wrong"}
    app = create_app(ApiSettings(site_file=env["site_file"], state_dir=env["state"], auth_fail_limit=2,
                                 trusted_proxies=("10.0.0.0/8",)))
    with TestClient(app, client=("10.0.0.7", 4000)) as proxy:
        attacker = {**bad, "X-Forwarded-For": "203.0.113.9"}
        assert [proxy.get("/api/zones", headers=attacker).status_code for _ in range(3)] == [401, 401, 429]
        # another client behind the same proxy is not blocked by the attacker's failures
        assert proxy.get("/api/zones", headers={**bad, "X-Forwarded-For": "198.51.100.4"}).status_code == 401
        # a client-written left entry cannot pick whom to blame: the proxy's right-most entry wins
        spoof = {**bad, "X-Forwarded-For": "198.51.100.4, 203.0.113.9"}
        assert proxy.get("/api/zones", headers=spoof).status_code == 429
    # a peer that is not a trusted proxy cannot choose its address with the header
    with TestClient(app, client=("192.0.2.1", 4000)) as direct:
        codes = [direct.get("/api/zones", headers={**bad, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                 for i in range(3)]
        assert codes == [401, 401, 429]


def test_bad_trusted_proxy_is_refused_at_start(env):
    result = CliRunner().invoke(cli, ["serve", str(env["site_file"]), "--state-dir", str(env["state"]),
                                      "--trusted-proxy", "10.0.0.300"])
    assert result.exit_code != 0 and "--trusted-proxy" in result.output and "10.0.0.300" in result.output


def test_forbidden_is_not_counted_as_a_failure(env):
    raise_alert(env["store"], "x")
    with make_client(env, auth_fail_limit=2) as c:
        h = {"Authorization": "Bearer " + env["tokens"]["viewer"]}
        assert {c.post("/api/alerts/x/acknowledge", headers=h).status_code for _ in range(6)} == {403}
        assert c.get("/api/zones", headers=h).status_code == 200


def test_throttle_window_expires():
    now = [1000.0]
    t = AuthThrottle(limit=2, window_s=30, clock=lambda: now[0])
    t.failure("a")
    now[0] += 10
    t.failure("a")
    assert t.retry_after("a") == 20
    now[0] += 20.5
    assert t.retry_after("a") is None
    t2 = AuthThrottle(limit=1, window_s=30, max_clients=100)
    for i in range(1000):
        t2.failure(f"10.0.{i // 256}.{i % 256}")
    assert len(t2._failures) == 100  # memory bounded under a spray of addresses


def test_tokens_are_stored_hashed_and_private(env):
    path = env["state"] / "tokens.json"
    text = path.read_text()
    data = json.loads(text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for role, token in env["tokens"].items():
        assert token not in text and token.startswith("cs_") and len(token) >= 40
        assert hash_token(token) in {t["sha256"] for t in data["tokens"] if t["role"] == role}


def test_token_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    state = str(tmp_path / "st")
    r = runner.invoke(cli, ["token", "create", "--role", "operator", "--name", "desk", "--state-dir", state])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("cs_")
    assert TokenBook(Path(state) / "tokens.json").verify(token).name == "desk"
    r = runner.invoke(cli, ["token", "create", "--state-dir", state])
    assert r.exit_code == 0
    listing = runner.invoke(cli, ["token", "list", "--state-dir", state]).stdout
    assert "desk\toperator" in listing and "viewer-1\tviewer" in listing and token not in listing
    assert runner.invoke(cli, ["token", "create", "--name", "desk", "--state-dir", state]).exit_code == 2
    bad_role = runner.invoke(cli, ["token", "create", "--role", "root", "--state-dir", state])
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    bad_name = runner.invoke(cli, ["token", "create", "--name", "../x", "--state-dir", state])
    assert bad_name.exit_code == 2
    assert runner.invoke(cli, ["token", "revoke", "desk", "--state-dir", state]).exit_code == 0
    assert TokenBook(Path(state) / "tokens.json").verify(token) is None
    assert runner.invoke(cli, ["token", "revoke", "desk", "--state-dir", state]).exit_code == 2


def test_corrupt_tokens_file_is_503_not_500(env):
    (env["state"] / "tokens.json").write_text("{not json")
    with make_client(env) as c:
        r = c.get("/api/zones", headers={"Authorization": "Bearer " + env["tokens"]["viewer"]})
        assert r.status_code == 503
