"""The Setup page in a real browser (Debian chromium via Playwright) at 1920x1080 against a real
`crowdsafe serve`: a camera set up from nothing by clicking, and the site it saves.

The served site is the demo site with its zones and gate line removed and its calibration replaced
by a rough four-pair guess. The test loads a venue plan image (drawn here at 20 px/m, with a 10 m
scale bar and a datum cross at the origin), scales it by clicking the scale bar's ends and typing
10 m, drags it onto the datum, clears the pairs, clicks each of the demo calibration's image points
on the people-free background and then its place on the plan, draws the three zones and the gate
by clicking on the plan, drags points, corners and ends away and back, and saves. ``site check``
must accept the file, the fit must be what ``calibrate`` reports for the shipped demo site (RMS
within 0.1 m), and the zone readings of real frames through the saved site's geometry must equal
those through the shipped site's within 2 %.

With ``CROWDSAFE_SETUP_SHOTS=<folder>`` the screenshots it takes on the way are also written
there (``tools/setup_screenshots.sh`` makes the docs' sequence this way).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app as cli
from crowdsafe.config.site import load_site
from crowdsafe.config.site_edit import merged_text, plain, read_tree
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.store import open_store
from tests.support.api_support import DEMO_SITE, fill_demo_store, make_tokens, write_background
from tests.support.browser import ARGS, ARTIFACTS, CHROMIUM, serving

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

SHIPPED = yaml.safe_load(DEMO_SITE.read_text())


def bare_site(text: str) -> str:
    """The demo site with no zones, no lines and a rough four-pair calibration (comments kept)."""
    data = plain(read_tree(text))
    data["zones"], data["lines"] = [], []
    cam = data["cameras"][0]
    cam["source"] = str(DEMO_SITE.parent / "vtest.avi")
    cam["tuning"] = str(DEMO_SITE.parent / "view001_tuning.json")
    cam["calibration"] = {"image_size": [768, 576],
                          "image_points": [[0, 576], [768, 576], [768, 300], [0, 300]],
                          "ground_points": [[0, 0], [10, 0], [10, 20], [0, 20]]}
    return merged_text(text, data)


@pytest.fixture
def server(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    site_file = tmp_path / "site.yaml"
    site_file.write_text(bare_site(DEMO_SITE.read_text()))
    store = open_store(state / "crowdsafe.sqlite")
    fill_demo_store(store, time.time())
    write_background(state, real=True)
    tokens = make_tokens(state)
    with serving(site_file, state) as url:
        yield {"url": url, "tokens": tokens, "site_file": site_file, "state": state}
    store.close()


def open_setup(browser, server, role: str):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(f"localStorage.setItem('crowdsafe.token', {server['tokens'][role]!r});")
    page.goto(server["url"] + "/setup")
    return page, errors


def to_screen(page, svg: str, x: float, y: float) -> tuple[float, float]:
    """Client coordinates of a point in an SVG's own units (the plan's y axis is flipped)."""
    return tuple(page.evaluate("""([id, x, y]) => { const s = document.getElementById(id);
        const p = s.createSVGPoint(); p.x = x; p.y = y; const q = p.matrixTransform(s.getScreenCTM());
        return [q.x, q.y]; }""", [svg, x, y]))


def shipped_rms() -> float:
    said = CliRunner().invoke(cli, ["calibrate", str(DEMO_SITE), "--camera", "view001"]).output
    return float(re.search(r"RMS ([0-9.]+) m", said).group(1))


def zone_readings(site_file: Path, frames: list[np.ndarray], counter) -> dict[str, list[float]]:
    geometry = build_site_geometry(load_site(site_file))
    cam = geometry.cameras["view001"]
    out: dict[str, list[float]] = {z: [] for z in geometry.zones}
    for image in frames:
        density = counter.count(image).density
        for z, weights in cam.zone_weights.items():
            out[z].append(float(np.sum(density * weights)))
    return out


def test_viewer_and_operator_get_no_setup(server):
    for role in ("viewer", "operator"):
        h = {"Authorization": "Bearer " + server["tokens"][role]}
        assert httpx.get(server["url"] + "/api/setup/site", headers=h).status_code == 403
        assert httpx.post(server["url"] + "/api/setup/fit", headers=h, json={}).status_code == 403
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page, _ = open_setup(browser, server, "operator")
        sync_api.expect(page.locator("#messages")).to_have_text("The Setup page is for admin tokens only.")
        browser.close()


PLAN_PX_PER_M = 20  # the venue plan drawn below: 20 px a metre, the ground origin at DATUM_PX
DATUM_PX = (600, 420)
SCALE_BAR_PX = ((40, 60), (240, 60))  # 10 m


def venue_plan(path: Path) -> Path:
    """A venue plan as a venue has one: paths and lawns outlined, a scale bar, a datum; no metres."""
    img = np.full((900, 900, 3), 245, np.uint8)
    def px(x: float, y: float) -> tuple[int, int]:
        return round(DATUM_PX[0] + x * PLAN_PX_PER_M), round(DATUM_PX[1] - y * PLAN_PX_PER_M)
    fills = [(200, 200, 200), (170, 220, 170), (220, 200, 170)]
    for zone, colour in zip(SHIPPED["zones"], fills, strict=True):
        poly = np.array([px(*p) for p in zone["polygon"]], np.int32)
        cv2.fillPoly(img, [poly], colour)
        cv2.polylines(img, [poly], True, (90, 90, 90), 2)
    (a, b) = SCALE_BAR_PX
    cv2.line(img, a, b, (0, 0, 0), 3)
    for end in (a, b):
        cv2.line(img, (end[0], end[1] - 10), (end[0], end[1] + 10), (0, 0, 0), 3)
    cv2.putText(img, "10 m", (a[0] + 70, a[1] - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    cv2.drawMarker(img, DATUM_PX, (0, 0, 255), cv2.MARKER_CROSS, 30, 2)
    cv2.putText(img, "datum", (DATUM_PX[0] + 10, DATUM_PX[1] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 255), 2)
    cv2.imwrite(str(path), img)
    return path


class Shots:
    """Screenshots of the run, in order: under test-artifacts/, and where CROWDSAFE_SETUP_SHOTS says."""

    def __init__(self, page) -> None:
        self.page, self.n = page, 0
        extra = os.environ.get("CROWDSAFE_SETUP_SHOTS")
        self.extra = Path(extra) if extra else None
        ARTIFACTS.mkdir(exist_ok=True)

    def __call__(self, name: str) -> None:
        self.n += 1
        path = ARTIFACTS / f"setup-{self.n}-{name}.png"
        self.page.screenshot(path=str(path))
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)


def plan_view(page) -> dict:
    return page.evaluate("U.view")


def show_on_plan(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """Zoom (wheel) and pan (drag) the plan as a user would until the box of metres fills most of it."""
    box = page.locator("#plan-svg").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    want = max(x1 - x0, (y1 - y0) * 4 / 3) * 1.15
    for _ in range(30):
        w = plan_view(page)["w"]
        if w < want:
            page.mouse.move(*centre)
            page.mouse.wheel(0, 100)
        elif w > want * 1.2 * 1.2:
            page.mouse.move(*centre)
            page.mouse.wheel(0, -100)
        else:
            break
        page.wait_for_timeout(50)
    # drag the wanted centre to the plan's centre (starting on empty floor: nothing else is dragged)
    tx, ty = to_screen(page, "plan-svg", (x0 + x1) / 2, -(y0 + y1) / 2)
    start = (box["x"] + 8, box["y"] + box["height"] - 8)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + centre[0] - tx, start[1] + centre[1] - ty, steps=5)
    page.mouse.up()
    for x, y in ((x0, y0), (x1, y1)):
        sx, sy = to_screen(page, "plan-svg", x, -y)
        assert box["x"] < sx < box["x"] + box["width"] and box["y"] < sy < box["y"] + box["height"], (x, y)


def click_plan(page, x: float, y: float) -> None:
    page.mouse.click(*to_screen(page, "plan-svg", x, -y))


def drag(page, svg: str, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Press at ``a`` and release at ``b`` (SVG units of ``svg``; the plan's y already flipped)."""
    page.mouse.move(*to_screen(page, svg, *a))
    page.mouse.down()
    page.mouse.move(*to_screen(page, svg, *b), steps=5)
    page.mouse.up()


def underlay(page) -> dict:
    return page.evaluate("({x: U.underlay.x, y: U.underlay.y, mpp: U.underlay.mpp})")


def underlay_px_to_plan(u: dict, px: tuple[float, float]) -> tuple[float, float]:
    """Plan metres (x, y up) of a pixel of the venue plan image as the page places it now."""
    return u["x"] + px[0] * u["mpp"], u["y"] - px[1] * u["mpp"]


def test_camera_set_up_from_nothing_in_the_browser(server, counter, tmp_path):
    cal = SHIPPED["cameras"][0]["calibration"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page, errors = open_setup(browser, server, "admin")
        shot = Shots(page)
        sync_api.expect(page.locator("body[data-ready=yes]")).to_have_count(1, timeout=15_000)
        sync_api.expect(page.locator("#pairs tbody tr")).to_have_count(4)
        page.wait_for_function("document.getElementById('bg').getAttribute('href').startsWith('blob:')")
        shot("start")
        # the venue plan under the grid: scaled by the two ends of its 10 m bar, dragged onto its datum
        page.set_input_files("#underlay-file", str(venue_plan(tmp_path / "venue.png")))
        page.wait_for_function("() => !!(U.underlay && U.underlay.natW === 900)")
        sync_api.expect(page.locator("#mode")).to_have_value("underlay-scale")
        for end in SCALE_BAR_PX:
            x, y = underlay_px_to_plan(underlay(page), end)
            click_plan(page, x, y)
        sync_api.expect(page.locator("#underlay-state")).to_contain_text("apart on the plan now")
        page.fill("#underlay-dist", "10")
        shot("venue-plan-scale")
        page.click("#underlay-scale")
        u = underlay(page)
        assert abs(u["mpp"] - 1 / PLAN_PX_PER_M) <= 0.01 / PLAN_PX_PER_M, u  # within 1 %
        datum = underlay_px_to_plan(u, DATUM_PX)
        show_on_plan(page, min(datum[0], 0) - 3, min(datum[1], 0) - 3,
                     max(datum[0], 0) + 3, max(datum[1], 0) + 3)
        page.select_option("#mode", "underlay-move")
        drag(page, "plan-svg", (datum[0], -datum[1]), (0, 0))
        u = underlay(page)
        got = underlay_px_to_plan(u, DATUM_PX)
        metres_per_screen_px = plan_view(page)["w"] / page.locator("#plan-svg").bounding_box()["width"]
        assert np.hypot(*got) <= 2 * metres_per_screen_px, (got, metres_per_screen_px)
        page.click("#zoom-fit")
        sync_api.expect(page.locator("#underlay-state")).to_have_attribute("data-saved", "yes")
        kept = json.loads((server["state"] / "setup" / "venue-plan.json").read_text())
        assert (kept["kind"], kept["width"]) == ("png", 900)
        assert np.allclose([kept["x"], kept["y"], kept["mpp"]], [u["x"], u["y"], u["mpp"]])
        shot("venue-plan-placed")
        # calibrate: click each image point on the background, then its place on the plan (to the cm)
        page.select_option("#mode", "pairs")
        page.uncheck("#snap")
        page.click("#clear-pairs")
        sync_api.expect(page.locator("#pairs tbody tr")).to_have_count(0)
        gx, gy = np.array(cal["ground_points"]).T
        show_on_plan(page, gx.min() - 1, gy.min() - 1, gx.max() + 1, gy.max() + 1)
        # a click lands to the screen pixel: the plan's metres per pixel at this zoom is the tolerance
        tol_m = 2 * plan_view(page)["w"] / page.locator("#plan-svg").bounding_box()["width"]
        assert tol_m <= 0.12, tol_m
        for i, ((u_, v), (x, y)) in enumerate(zip(cal["image_points"], cal["ground_points"], strict=True)):
            page.mouse.click(*to_screen(page, "img-svg", u_, v))
            sync_api.expect(page.locator("#pairs tbody tr")).to_have_count(i + 1)
            click_plan(page, x, y)
            got = page.evaluate(f"U.pairs[{i}].ground")
            assert got is not None and np.hypot(got[0] - x, got[1] - y) <= tol_m, (i, got, (x, y))
            if i == 3:  # the demo's first three points share an image row: the page says why no fit
                sync_api.expect(page.locator("#fit-state")).to_contain_text("no fit: image_points")
            if i == 4:
                sync_api.expect(page.locator("#fit-state")).to_contain_text("fit: RMS")
                shot("five-pairs")
        sync_api.expect(page.locator("#pairs tbody tr")).to_have_count(9)
        sync_api.expect(page.locator("#fit-state")).to_contain_text("fit: RMS", timeout=10_000)
        page.wait_for_function("[...document.querySelectorAll('#pairs td.error')]"
                               ".filter(td => td.textContent).length === 9")
        # a pair dragged off its place (on the picture, then on the plan) shows at once as the worst
        # error; dragged back, the fit recovers
        last = page.locator('#pairs tbody tr[data-pair="8"] td.error')
        u_, v = cal["image_points"][8]
        drag(page, "img-svg", (u_, v), (u_ - 80, v + 60))
        sync_api.expect(last).to_have_class(re.compile(r"\bbad\b"), timeout=10_000)
        shot("bad-pair")
        sync_api.expect(page.locator("#pairs tbody tr")).to_have_count(9)
        drag(page, "img-svg", (u_ - 80, v + 60), (u_, v))
        sync_api.expect(last).to_have_class(re.compile(r"\bok\b"), timeout=10_000)
        x, y = page.evaluate("U.pairs[8].ground")
        drag(page, "plan-svg", (x, -y), (x + 4, -y))
        sync_api.expect(last).to_have_class(re.compile(r"\bbad\b"), timeout=10_000)
        assert abs(page.evaluate("U.pairs[8].ground")[0] - (x + 4)) <= tol_m
        drag(page, "plan-svg", (x + 4, -y), (x, -y))
        sync_api.expect(last).to_have_class(re.compile(r"\bok\b"), timeout=10_000)
        page.wait_for_function("() => document.getElementById('fit-state').dataset.rms !== ''")
        rms = float(page.locator("#fit-state").get_attribute("data-rms"))
        assert abs(rms - shipped_rms()) <= 0.1, (rms, shipped_rms())
        assert page.locator("#img-grid polyline.floor").count() > 10
        assert page.locator("#img-grid polyline.head").count() > 10
        shot("calibrated")
        # draw the three zones on the plan (corners on the 0.5 m snap; a shared corner is clicked on)
        page.check("#snap")
        page.select_option("#mode", "zone")
        zx = [p[0] for z in SHIPPED["zones"] for p in z["polygon"]]
        zy = [p[1] for z in SHIPPED["zones"] for p in z["polygon"]]
        show_on_plan(page, min(zx), min(zy), max(zx), max(zy))
        # a stray corner: Backspace takes back the last one, Esc drops the zone being drawn
        click_plan(page, 0, 0)
        click_plan(page, 2, 0)
        assert page.evaluate("U.drawing") == [[0, 0], [2, 0]]
        page.keyboard.press("Backspace")
        assert page.evaluate("U.drawing") == [[0, 0]]
        page.keyboard.press("Escape")
        assert page.evaluate("U.drawing") == []
        for zone in SHIPPED["zones"]:
            page.fill("#zone-id", zone["id"])
            page.fill("#zone-name", zone.get("name", ""))
            page.select_option("#zone-type", zone["type"])
            page.fill("#zone-capacity", str(zone.get("capacity", "")))
            for x, y in zone["polygon"]:
                click_plan(page, x, y)
            page.click("#zone-done")
            sync_api.expect(page.locator(f'#plan-zones polygon[data-zone="{zone["id"]}"]')).to_have_count(1)
        # a corner dragged away moves the zone; dragged back, the zone is as drawn
        x, y = SHIPPED["zones"][2]["polygon"][4]
        drag(page, "plan-svg", (x, -y), (x + 2, -(y + 1)))
        assert page.evaluate("U.zones[2].polygon[4]") == [x + 2, y + 1]
        drag(page, "plan-svg", (x + 2, -(y + 1)), (x, -y))
        assert page.evaluate("U.zones[2].polygon[4]") == [x, y]
        # and the gate line, whose end is dragged away and back too
        gate = SHIPPED["lines"][0]
        page.select_option("#mode", "line")
        page.fill("#line-id", gate["id"])
        page.fill("#line-name", gate["name"])
        page.fill("#line-width", str(gate["width_m"]))
        page.select_option("#line-positive", gate["positive"])
        for x, y in (gate["a"], gate["b"]):
            click_plan(page, x, y)
        sync_api.expect(page.locator(f'#plan-zones line[data-line="{gate["id"]}"]')).to_have_count(1)
        x, y = gate["b"]
        drag(page, "plan-svg", (x, -y), (x + 3, -y))
        assert page.evaluate("U.lines[0].b") == [x + 3, y]
        drag(page, "plan-svg", (x + 3, -y), (x, -y))
        assert page.evaluate("U.lines[0].b") == [x, y]
        # each zone and the gate drawn into the picture, at the floor and at head height
        for name in [z["id"] for z in SHIPPED["zones"]] + [gate["id"]]:
            sync_api.expect(page.locator(f'#img-zones polyline.zone-floor[data-outline="{name}"]').first
                            ).to_be_attached(timeout=10_000)
            assert page.locator(f'#img-zones polyline.zone-head[data-outline="{name}"]').count() >= 1
        # and in every camera, with the part each camera counts; the gate's passage and "in" way
        sync_api.expect(page.locator("#preview-state")).to_have_attribute("data-ok", "yes", timeout=15_000)
        cam = page.locator('#cams .cam[data-camera="view001"]')
        sync_api.expect(cam).to_have_count(1)
        # (the preview follows the last edit within a moment)
        sync_api.expect(cam.locator(f'polyline.line-floor[data-outline="{gate["id"]}"]').first).to_be_attached()
        sync_api.expect(cam.locator(f'polyline.line-head[data-outline="{gate["id"]}"]').first).to_be_attached()
        for zone in SHIPPED["zones"]:
            sync_api.expect(cam.locator(f'polygon.owned-zone[data-owned="{zone["id"]}"]').first).to_be_attached()
            sync_api.expect(cam.locator(f'polyline.zone-head[data-outline="{zone["id"]}"]').first).to_be_attached()
        assert page.locator('#plan-owned polygon.owned-area[data-camera="view001"]').count() >= 1
        owners = page.locator(f'#zones tr[data-line="{gate["id"]}"] td.owners')
        sync_api.expect(owners).to_have_text("view001")
        sync_api.expect(page.locator('#zones tr[data-zone="walkway"] td.owners')).to_contain_text("view001")
        passage = page.locator(f'#plan-zones line.passage[data-passage="{gate["id"]}"]')
        sync_api.expect(passage).to_have_count(1)
        px = sorted(float(passage.get_attribute(k)) for k in ("x1", "x2"))
        assert px[0] < gate["a"][0] and px[1] > gate["b"][0]  # the passage reaches past the line's ends
        arrow = page.locator(f'#plan-zones line.gate-in[data-in="{gate["id"]}"]')
        ax1, ay1, ax2, ay2 = (float(arrow.get_attribute(k)) for k in ("x1", "y1", "x2", "y2"))
        assert abs(ax2 - ax1) < 1e-6 and ay2 < ay1  # "in" (left of a->b, which runs +x) is +y: up on the plan
        shot("drawn")
        page.locator("#cams").scroll_into_view_if_needed()
        shot("every-camera")
        page.evaluate("window.scrollTo(0, 0)")
        page.click("#save")
        sync_api.expect(page.locator("#save-state")).to_have_attribute("data-saved", "yes", timeout=15_000)
        shot("saved")
        # the venue plan is kept by the server, where it was placed; the saved site comes back on a reload
        page.reload()
        sync_api.expect(page.locator("body[data-ready=yes]")).to_have_count(1, timeout=15_000)
        page.wait_for_function("() => !!U.underlay")
        assert underlay(page) == u
        sync_api.expect(page.locator("#plan-zones polygon.zone")).to_have_count(3)
        browser.close()
    assert not errors, errors
    site_file = server["site_file"]
    check = CliRunner().invoke(cli, ["site", "check", str(site_file)])
    assert check.exit_code == 0, check.output
    assert (site_file.parent / "site.yaml.~1~").is_file()
    saved = yaml.safe_load(site_file.read_text())
    got = saved["cameras"][0]["calibration"]
    assert np.abs(np.subtract(got["ground_points"], cal["ground_points"])).max() <= tol_m
    assert np.abs(np.subtract(got["image_points"], cal["image_points"])).max() <= 1.0
    assert [z["polygon"] for z in saved["zones"]] == [z["polygon"] for z in SHIPPED["zones"]]
    assert [(z["id"], z["type"], z.get("capacity")) for z in saved["zones"]] == \
        [(z["id"], z["type"], z.get("capacity")) for z in SHIPPED["zones"]]
    line = saved["lines"][0]
    assert (line["a"], line["b"], line["positive"], line["width_m"]) == \
        (gate["a"], gate["b"], gate["positive"], gate["width_m"])
    # every comment of the file the page started from is still there, in order
    def comments(text: str) -> list[str]:
        return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]
    assert comments(site_file.read_text()) == comments((site_file.parent / "site.yaml.~1~").read_text())
    # the running site reloaded: its map has the three zones and the gate
    admin = {"Authorization": "Bearer " + server["tokens"]["admin"]}
    view = httpx.get(server["url"] + "/api/site", headers=admin).json()
    assert [z["id"] for z in view["zones"]] == ["walkway", "lawn", "forecourt"]
    assert [ln["id"] for ln in view["lines"]] == ["east_gate"]
    # zone readings of real frames through the saved geometry and the shipped one agree within 2 %
    cap = cv2.VideoCapture(str(DEMO_SITE.parent / "vtest.avi"))
    frames = []
    for index in range(0, 300):
        ok, image = cap.read()
        if ok and index % 100 == 0:
            frames.append(image)
    cap.release()
    ours = zone_readings(site_file, frames, counter)
    shipped_copy = site_file.parent / "shipped.yaml"
    shutil.copy(DEMO_SITE, shipped_copy)
    text = shipped_copy.read_text().replace("source: vtest.avi", f"source: {DEMO_SITE.parent}/vtest.avi")
    shipped_copy.write_text(text.replace("tuning: view001_tuning.json",
                                         f"tuning: {DEMO_SITE.parent}/view001_tuning.json"))
    theirs = zone_readings(shipped_copy, frames, counter)
    for zone in theirs:
        for a, b in zip(ours[zone], theirs[zone], strict=True):
            assert abs(a - b) <= 0.02 * max(b, 1.0), (zone, ours[zone], theirs[zone])
