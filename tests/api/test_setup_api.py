"""The Setup page's routes: admin only, saves checked like `site check`, comments kept, a numbered
backup, the running site reloaded with its readings, concurrent edits refused, hostile bodies 422."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crowdsafe.api import ApiSettings, create_app
from crowdsafe.cli.main import app as cli
from tests.support.api_support import demo_env

NOW = time.time()


@pytest.fixture
def env(tmp_path: Path) -> dict:
    env = demo_env(tmp_path, NOW)
    yield env
    env["store"].close()


def client(env: dict) -> TestClient:
    return TestClient(create_app(ApiSettings(site_file=env["site_file"], state_dir=env["state"],
                                             auth_fail_limit=10_000)))


def auth(env: dict, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + env["tokens"][role]}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_viewer_and_operator_cannot_reach_setup_routes(env):
    with client(env) as c:
        for role in ("viewer", "operator"):
            assert c.get("/api/setup/site", headers=auth(env, role)).status_code == 403
            r = c.post("/api/setup/site", headers=auth(env, role), json={"version": "0" * 64, "site": {}})
            assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert c.get("/api/setup/site").status_code == 401
        assert c.get("/api/setup/site", headers=auth(env, "admin")).status_code == 200


def test_every_setup_route_refuses_viewer_and_operator_tokens(env):
    from crowdsafe.api.routes.setup import router  # every setup route is declared there

    routes = [(m, r.path) for r in router.routes for m in sorted(getattr(r, "methods", ()) or ())]
    assert {p for _, p in routes} >= {"/api/setup/site", "/api/setup/fit", "/api/setup/preview",
                                      "/api/setup/venue-plan", "/api/setup/venue-plan/image"}, routes
    folder = env["site_file"].parent
    before = snapshot(folder)
    with client(env) as c:
        for method, path in routes:
            for role in ("viewer", "operator"):
                r = c.request(method, path, headers=auth(env, role), json={"version": "0" * 64, "site": {}})
                assert r.status_code == 403, (method, path, role, r.status_code)
            assert c.request(method, path, json={}).status_code == 401, (method, path)
    assert snapshot(folder) == before


def test_preview_shows_each_camera_its_part_of_every_zone_and_the_gates(env):
    """Two cameras over the same floor (the demo camera, and a copy of it moved 8 m along x): each
    counts its own part of each zone, the parts add up to the zone's seen floor, and the preview
    is of the edited site, not the saved one (nothing written)."""
    import shapely

    folder = env["site_file"].parent
    before = snapshot(folder)
    with client(env) as c:
        admin = auth(env, "admin")
        site = c.get("/api/setup/site", headers=admin).json()["site"]
        one = c.post("/api/setup/preview", headers=admin, json={"site": site}).json()
        assert [cam["id"] for cam in one["cameras"]] == ["view001"]
        second = copy.deepcopy(site["cameras"][0])
        second["id"] = "view002"
        moved = [[x + 8.0, y] for x, y in second["calibration"]["ground_points"]]
        second["calibration"]["ground_points"] = moved
        site["cameras"].append(second)
        r = c.post("/api/setup/preview", headers=admin, json={"site": site})
        assert r.status_code == 200, r.text
        two = r.json()
    assert snapshot(folder) == before
    assert [cam["id"] for cam in two["cameras"]] == ["view001", "view002"]
    for zone in ("walkway", "forecourt"):
        parts = two["zones"][zone]
        assert all(a > 10 for a in parts.values()), (zone, parts)  # both cameras count a part of it
        alone = one["zones"][zone]["view001"]
        assert sum(parts.values()) >= alone * 0.99, (zone, parts, alone)  # more floor seen, never less
    # the owned floors do not overlap: no spot is counted twice
    owned = [shapely.union_all([shapely.Polygon(r) for r in cam["owned"]]) for cam in two["cameras"]]
    assert shapely.intersection(*owned).area <= 0.02 * min(o.area for o in owned)
    for cam in two["cameras"]:
        walkway = cam["zones"]["walkway"]
        assert walkway["floor"] and walkway["head"] and walkway["owned"]
    gate = two["lines"][0]
    assert gate["id"] == "east_gate" and gate["camera"] in ("view001", "view002")
    assert gate["in_normal"] == [0.0, 1.0] or gate["in_normal"] == [-0.0, 1.0]
    (ax, ay), (bx, by) = gate["passage"]
    assert ay == by == -12.0 and ax < -13.5 and bx > 0.0  # the passage reaches past the line's ends


def test_save_keeps_comments_makes_a_backup_reloads_and_keeps_readings(env):
    site_file: Path = env["site_file"]
    original = site_file.read_text()
    with client(env) as c:
        admin = auth(env, "admin")
        before = {z["id"]: z["reading"]["count"] for z in c.get("/api/zones", headers=admin).json()}
        got = c.get("/api/setup/site", headers=admin).json()
        assert got["yaml"] == original and got["file"] == "site.yaml"
        site = copy.deepcopy(got["site"])
        site["zones"][0]["capacity"] = 300
        site["zones"].append({"id": "plaza", "name": "New plaza", "type": "standing", "capacity": 120,
                              "polygon": [[-18.0, -6.0], [-14.0, -6.0], [-14.0, -2.0], [-18.0, -2.0]]})
        r = c.post("/api/setup/site", headers=admin, json={"version": got["version"], "site": site})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["saved"] and body["backup"] == "site.yaml.~1~" and body["zones"] == 4
        assert "zones[walkway].capacity: was 250, now 300" in body["changed"]
        assert "zones[plaza]: added" in body["changed"]
        text = site_file.read_text()
        # every comment line of the original is still there, in the same order
        comments = [ln.strip() for ln in original.splitlines() if ln.strip().startswith("#")]
        kept = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]
        assert kept == comments
        assert "capacity: 300" in text and "id: plaza" in text
        assert text.index("id: walkway") < text.index("id: lawn") < text.index("id: plaza")
        assert (site_file.parent / "site.yaml.~1~").read_text() == original
        # the running site has the edit (reloaded), the readings are still served
        zones = c.get("/api/site", headers=admin).json()["zones"]
        assert {z["id"]: z["capacity"] for z in zones}["walkway"] == 300
        zones_now = c.get("/api/zones", headers=admin).json()
        after = {z["id"]: (z.get("reading") or {}).get("count") for z in zones_now}
        assert {k: after[k] for k in before} == before and after["plaza"] is None
        # `site check` accepts what was written
        result = CliRunner().invoke(cli, ["site", "check", str(site_file)])
        assert result.exit_code == 0, result.output
        assert "zone plaza (New plaza): standing, 16.0 m²" in result.output
        # a second save makes the next backup
        site["zones"][0]["capacity"] = 310
        r = c.post("/api/setup/site", headers=admin, json={"version": body["version"], "site": site})
        assert r.status_code == 200 and r.json()["backup"] == "site.yaml.~2~"


def test_second_admin_saving_an_old_version_is_refused_with_what_changed(env):
    with client(env) as c:
        admin = auth(env, "admin")
        first = c.get("/api/setup/site", headers=admin).json()
        second = c.get("/api/setup/site", headers=admin).json()
        a = copy.deepcopy(first["site"])
        a["zones"][1]["capacity"] = 450
        assert c.post("/api/setup/site", headers=admin, json={"version": first["version"], "site": a}
                      ).status_code == 200
        saved = env["site_file"].read_bytes()
        b = copy.deepcopy(second["site"])
        b["zones"][2]["capacity"] = 99
        r = c.post("/api/setup/site", headers=admin, json={"version": second["version"], "site": b})
        assert r.status_code == 409
        detail = r.json()["detail"]
        assert detail["changed"] == ["zones[lawn].capacity: was 400, now 450"]
        assert env["site_file"].read_bytes() == saved


def test_invalid_site_gets_site_check_text_and_changes_nothing(env, tmp_path: Path):
    with client(env) as c:
        admin = auth(env, "admin")
        got = c.get("/api/setup/site", headers=admin).json()
        bad = copy.deepcopy(got["site"])
        bad["zones"][0]["capacity"] = -5
        before = snapshot(tmp_path)
        r = c.post("/api/setup/site", headers=admin, json={"version": got["version"], "site": bad})
        assert r.status_code == 422
        problems = r.json()["detail"]["problems"]
        # the same text `crowdsafe site check` prints for the same file
        other = tmp_path / "other"
        other.mkdir()
        (other / "vtest.avi").touch()
        import yaml
        (other / "site.yaml").write_text(yaml.safe_dump(bad))
        check = CliRunner().invoke(cli, ["site", "check", str(other / "site.yaml")])
        assert check.exit_code == 2
        said = " ".join(check.output.split())
        assert problems and all(p in said for p in problems), (problems, check.output)
        assert problems[0].startswith("zones[0].capacity")
        assert snapshot(tmp_path) == before


HOSTILE = [  # (name, body from (version, site), the field the answer names; None: 413 before parsing)
    ("huge", lambda v, s: {"version": v, "site": {**s, "name": "x" * 200_000}}, None),
    ("huge name", lambda v, s: {"version": v, "site": {**s, "name": "x" * 60_000}}, "name: text of 60000"),
    ("huge polygon", lambda v, s: {"version": v, "site": {
        **s, "zones": [{**s["zones"][0], "polygon": [[0, 0]] * 6000}]}}, "zones[0].polygon: 6000 items"),
    ("deep", lambda v, s: {"version": v, "site": {**s, "name": json.loads("[" * 40 + "]" * 40)}},
     "nested deeper"),
    ("wrong types", lambda v, s: {"version": v, "site": {**s, "zones": "everything"}},
     "zones: input should be"),
    ("wrong types in a zone", lambda v, s: {"version": v, "site": {
        **s, "zones": [{**s["zones"][0], "capacity": "lots"}]}}, "zones[0].capacity"),
    ("traversal in an id", lambda v, s: {"version": v, "site": {
        **s, "zones": [{**s["zones"][0], "id": "../../etc/passwd"}]}}, "zones[0].id"),
    ("traversal in a source", lambda v, s: {"version": v, "site": {
        **s, "cameras": [{**s["cameras"][0], "source": "../../../etc/passwd"}]}}, "cameras[0].source"),
    ("absolute tuning", lambda v, s: {"version": v, "site": {
        **s, "cameras": [{**s["cameras"][0], "tuning": "/etc/shadow"}]}}, "cameras[0].tuning"),
    ("bad version", lambda v, s: {"version": "../site.yaml", "site": s}, '"version"'),
    ("extra key", lambda v, s: {"version": v, "site": s, "path": "/etc/passwd"}, '"path"'),
    ("site not an object", lambda v, s: {"version": v, "site": [1, 2]}, '"site"'),
]


#: Hostile sites (no version): what the preview is sent; each gets a 422 naming the field.
HOSTILE_SITES = [(name, (lambda s, make=make: make("0" * 64, s)["site"]), field)
                 for name, make, field in HOSTILE if field is not None and name not in
                 ("bad version", "extra key", "site not an object")] + [
    ("site not an object", lambda s: [1, 2], '"site"'),
    ("traversal in a line id", lambda s: {**s, "lines": [{**s["lines"][0], "id": "../x"}]}, "lines[0].id"),
]


#: (route, name, body from (version, site), field): saves, and previews of the same sites.
HOSTILE_BODIES = [("site", *h) for h in HOSTILE] + [
    ("preview", name, (lambda v, s, make=make: {"site": make(s)}), field)
    for name, make, field in HOSTILE_SITES]


@pytest.mark.parametrize("route,name,make,field", HOSTILE_BODIES,
                         ids=[f"{h[0]}-{h[1]}" for h in HOSTILE_BODIES])
def test_hostile_bodies_get_a_field_named_422_and_change_nothing(env, route, name, make, field):
    folder = env["site_file"].parent
    with client(env) as c:
        admin = auth(env, "admin")
        got = c.get("/api/setup/site", headers=admin).json()
        before = snapshot(folder)
        body = make(got["version"], got["site"])
        r = c.post(f"/api/setup/{route}", headers=admin, content=json.dumps(body))
        if field is None:
            assert r.status_code == 413, r.text  # the API's body limit answers before any parsing
        else:
            assert r.status_code == 422, (name, r.status_code, r.text)
            assert field in json.dumps(r.json()), r.text
        assert snapshot(folder) == before


def test_live_fit_reports_what_calibrate_reports_and_draws_the_grids(env):
    import yaml

    cal = yaml.safe_load(env["site_file"].read_text())["cameras"][0]["calibration"]
    body = {k: cal[k] for k in ("image_points", "ground_points", "image_size", "focal_px", "principal_point")}
    with client(env) as c:
        for role in ("viewer", "operator"):
            assert c.post("/api/setup/fit", headers=auth(env, role), json=body).status_code == 403
        r = c.post("/api/setup/fit", headers=auth(env, "admin"), json=body)
        assert r.status_code == 200, r.text
        fit = r.json()
        said = CliRunner().invoke(cli, ["calibrate", str(env["site_file"]), "--camera", "view001"]).output
        assert f"RMS {fit['rms_m']:.3f} m, max {fit['max_m']:.3f} m" in said
        assert len(fit["errors_m"]) == 9 and fit["floor_grid"] and fit["head_grid"]
        # a wrong pair shows as the largest error at once
        bad = {**body, "ground_points": [*body["ground_points"][:-1], [5.0, -9.981]]}
        errors = c.post("/api/setup/fit", headers=auth(env, "admin"), json=bad).json()["errors_m"]
        assert max(range(9), key=errors.__getitem__) == 8 and errors[8] > 1.0
        # three pairs are not a calibration: field-named 422
        few = {**body, "image_points": body["image_points"][:3], "ground_points": body["ground_points"][:3]}
        r = c.post("/api/setup/fit", headers=auth(env, "admin"), json=few)
        assert r.status_code == 422 and "image_points" in r.text


def png_bytes(width: int, height: int) -> bytes:
    import cv2
    import numpy as np

    image = np.full((height, width, 3), 240, np.uint8)
    cv2.line(image, (10, 10), (width - 10, height - 10), (0, 0, 0), 3)
    return cv2.imencode(".png", image)[1].tobytes()


def test_venue_plan_is_kept_by_the_server_for_admins_and_placed_in_metres(env):
    folder = env["state"] / "setup"
    raw = png_bytes(400, 300)
    with client(env) as c:
        admin = auth(env, "admin")
        assert c.get("/api/setup/venue-plan", headers=admin).status_code == 404
        r = c.post("/api/setup/venue-plan/image", headers={**admin, "Content-Type": "image/png"}, content=raw)
        assert r.status_code == 200, r.text
        assert r.json()["width"] == 400 and r.json()["height"] == 300
        got = c.get("/api/setup/venue-plan/image", headers=admin)
        assert got.content == raw and got.headers["content-type"] == "image/png"
        r = c.post("/api/setup/venue-plan", headers=admin, json={"x": -30.5, "y": 20.0, "mpp": 0.05})
        assert r.status_code == 200, r.text
        meta = c.get("/api/setup/venue-plan", headers=admin).json()
        assert (meta["x"], meta["y"], meta["mpp"], meta["by"]) == (-30.5, 20.0, 0.05, "admin-1")
        # a JPEG replaces it
        import cv2
        import numpy as np

        jpeg = cv2.imencode(".jpg", np.zeros((50, 70, 3), np.uint8))[1].tobytes()
        r = c.post("/api/setup/venue-plan/image", headers={**admin, "Content-Type": "image/jpeg"},
                   content=jpeg)
        assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (70, 50), r.text
        assert sorted(p.name for p in folder.iterdir()) == ["venue-plan.jpeg", "venue-plan.json"]
        assert c.delete("/api/setup/venue-plan", headers=admin).json() == {"removed": True}
        assert c.get("/api/setup/venue-plan/image", headers=admin).status_code == 404


VENUE_HOSTILE = [  # (name, body, content type, status, what the answer names)
    ("text", b"hello, not an image", "image/png", 422, "not a PNG or JPEG"),
    ("a header claiming a huge picture",
     b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (100_000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00",
     "image/png", 422, "at most 12000 a side"),
    ("a good header, then garbage", png_bytes(40, 30)[:33] + b"\x00" * 200, "image/png", 422,
     "not a readable PNG"),
    ("over 8 MiB", b"\x89PNG" + b"\x00" * (8 * 1024 * 1024), "image/png", 413, "request body over"),
    ("SVG with a script", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     "image/svg+xml", 422, "not a PNG or JPEG"),
]


@pytest.mark.parametrize("name,body,kind,status,said", VENUE_HOSTILE, ids=[h[0] for h in VENUE_HOSTILE])
def test_hostile_venue_plans_are_refused_and_change_nothing(env, name, body, kind, status, said):
    with client(env) as c:
        admin = auth(env, "admin")
        assert c.post("/api/setup/venue-plan/image", headers={**admin, "Content-Type": "image/png"},
                      content=png_bytes(40, 30)).status_code == 200
        before = snapshot(env["state"] / "setup")
        r = c.post("/api/setup/venue-plan/image", headers={**admin, "Content-Type": kind}, content=body)
        assert r.status_code == status and said in r.text, (r.status_code, r.text)
        for placement in ({"x": 0, "y": 0, "mpp": -1}, {"x": "NaN", "y": 0, "mpp": 1}, {"x": 0, "y": 0},
                          {"x": 0, "y": 0, "mpp": 1, "path": "../../x"}):
            r = c.post("/api/setup/venue-plan", headers=admin, content=json.dumps(placement))
            assert r.status_code == 422, (placement, r.text)
        assert snapshot(env["state"] / "setup") == before
