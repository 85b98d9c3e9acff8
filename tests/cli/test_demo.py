"""`crowdsafe demo`, the Quick start's main job: the demo site live, with API and dashboard.

One real demo process (the bundled video looped as a camera, the real network, SQLite, the
API on a free loopback port) serves every test in this module; the last test stops it with
SIGINT and checks the clean exit. The browser test drives the dashboard in Debian's chromium
and is skipped, with the reason, where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from crowdsafe.cli.demo import DEMO_BUSY_PCT, GateTally, annotated_crossings, ground_truth
from crowdsafe.runtime.pipeline import FrameOutput

CHROMIUM = os.environ.get("CROWDSAFE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ZONES = {"walkway", "lawn", "forecourt"}


class Demo:
    """A running `crowdsafe demo` whose output is collected as it comes."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crowdsafe.cli.main", "demo", "--state-dir", str(state), "--port", "0",
             "--duration", "240"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.drains = [threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
                       for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for drain in self.drains:
            drain.start()

    @staticmethod
    def _drain(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def printed(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"demo never printed {pattern!r}:\n" + "\n".join(self.err + self.out))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for drain in self.drains:  # the last lines may still be in the pipes
            drain.join(10)
        return code


def wait_for(predicate: object, timeout: float, step: float = 0.5) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():  # type: ignore[operator]
            return value
        time.sleep(step)
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("demo") / "state"
    running = Demo(state)
    try:
        url = running.printed(r"dashboard:\s+(http://127\.0\.0\.1:\d+)/", 60).group(1)
        tokens = {role: running.printed(rf"{role} token:\s+(cs_\S+)", 5).group(1)
                  for role in ("viewer", "operator")}
        yield {"demo": running, "url": url, "tokens": tokens, "state": state}
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)


def client(demo: dict, role: str) -> httpx.Client:
    return httpx.Client(base_url=demo["url"], timeout=10,
                        headers={"Authorization": f"Bearer {demo['tokens'][role]}"})


def test_demo_serves_live_readings_of_the_demo_site_to_its_tokens(demo):
    assert httpx.get(demo["url"] + "/health", timeout=5).json()["status"] == "ok"
    assert httpx.get(demo["url"] + "/api/zones", timeout=5).status_code == 401  # nothing without a token
    with client(demo, "viewer") as c:
        assert c.get("/api/site").json()["name"] == "PETS 2009 campus (demo)"
        zones = wait_for(lambda: [z for z in c.get("/api/zones").json() if z["reading"]] or None, 90)
        assert zones, "no zone reading within 90 s"
        assert {z["id"] for z in zones} == ZONES
        for z in zones:
            reading = z["reading"]
            assert 0 <= reading["count"] < 100 and reading["los"] in "ABCDEF"
            assert time.time() - reading["ts"] < 30  # live: stamped with the wall clock
        lines = wait_for(lambda: [ln for ln in c.get("/api/lines").json() if ln.get("reading")] or None, 30)
        assert lines and lines[0]["id"] == "east_gate"
        cameras = c.get("/api/cameras").json()
        assert [cam["id"] for cam in cameras] == ["view001"]
    tokens = (demo["state"] / "tokens.json").read_text()
    assert demo["tokens"]["viewer"] not in tokens and "demo-viewer" in tokens  # hashed at rest


def test_demo_metrics_carry_the_runners_live_state(demo):
    with client(demo, "viewer") as c:
        def scrape() -> str | None:
            body = c.get("/metrics").text
            # the reader's rate is measured over its first 2 s: a fast engine can count before that
            measured = re.search(r'crowdsafe_camera_fps\{camera="view001"\} ([1-9]\S*)', body)
            return body if "crowdsafe_pipeline_latency_seconds{" in body and measured else None

        text = wait_for(scrape, 60)
    assert text, "no pipeline latency in /metrics"
    latency = float(re.search(r'crowdsafe_pipeline_latency_seconds\{camera="view001"\} (\S+)', text).group(1))
    assert 0 < latency < 60
    assert re.search(r"crowdsafe_pipeline_queue_depth [01]\.0", text)
    fps = float(re.search(r'crowdsafe_camera_fps\{camera="view001"\} (\S+)', text).group(1))
    assert fps > 3  # the 7 fps video is read live, in real time
    assert re.search(r'crowdsafe_frames_processed_total\{camera="view001"\} [1-9]', text)
    assert 'crowdsafe_zone_count{zone="walkway"}' in text


def test_demo_alert_is_raised_and_only_the_operator_may_acknowledge_it(demo):
    with client(demo, "viewer") as viewer, client(demo, "operator") as operator:
        raised = wait_for(lambda: [a for a in viewer.get("/api/alerts", params={"state": "raised"}).json()
                                   if a["rule"] == "demo_busy"] or None, 150)
        assert raised, f"no zone above {DEMO_BUSY_PCT} % of its capacity (20 s mean, held 15 s) within 150 s"
        alert_id = raised[0]["alert_id"]
        assert viewer.post(f"/api/alerts/{alert_id}/acknowledge").status_code == 403
        r = operator.post(f"/api/alerts/{alert_id}/acknowledge")
        assert r.status_code in (200, 409)  # 409: it cleared in between, which is also live behaviour
        if r.status_code == 200:
            assert r.json()["acknowledged_by"] == "demo-operator"


def test_demo_dashboard_in_chromium_shows_zones_and_live_counts(demo):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                     "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{demo['url']}/#token={demo['tokens']['operator']}")  # the link the demo prints
            sync_api.expect(page.locator("#conn")).to_have_text("live", timeout=20_000)
            assert "#token" not in page.url  # taken out of the address bar at once
            sync_api.expect(page.locator("#who")).to_contain_text("operator")
            sync_api.expect(page.locator("#zones-table tbody tr")).to_have_count(3)
            cell = page.locator('td[data-count="walkway"]')
            sync_api.expect(cell).to_have_text(re.compile(r"^\d+$"), timeout=30_000)
            first = cell.get_attribute("title")  # the count's interval, to one decimal: moves every frame
            # the pipeline counts a new frame every second or two; the page follows without reloading
            sync_api.expect(cell).not_to_have_attribute("title", first or "", timeout=60_000)
            sync_api.expect(page.locator("#map text.los-letter")).to_have_count(3)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


def test_demo_stops_cleanly_on_sigint_with_a_summary_and_the_truth(demo):
    running: Demo = demo["demo"]
    assert running.stop() == 0, "\n".join(running.err)
    out = "\n".join(running.out)
    frame_line = re.compile(r"\d\d:\d\d:\d\d view001: [\d.]+ people \(annotated \d+\)")
    frames = [ln for ln in running.out if frame_line.match(ln)]
    assert frames, out
    m = re.search(r"counted vs annotated people over (\d+) frames: mean ([\d.]+) vs ([\d.]+), "
                  r"MAE ([\d.]+)", out)
    assert m, out
    assert int(m.group(1)) == len(frames)
    truth = ground_truth()
    assert len(truth) == 795 and 3 <= float(m.group(3)) <= max(truth.values())
    assert "0 unwritten" in out
    with sqlite3.connect(demo["state"] / "crowdsafe.sqlite") as conn:
        stored = conn.execute("SELECT COUNT(DISTINCT ts) FROM zone_readings").fetchone()[0]
    assert stored == len(frames)  # every frame printed reached the store
    assert sorted(p.name for p in (demo["state"]).rglob("*.jpg")) in ([], ["view001.jpg"])  # no frame kept
    gate = re.search(r"line east_gate: measured ([\d.]+) in, ([\d.]+) out vs annotated (\d+) in, (\d+) out "
                     r"in the frames its (\d+) readings covered", out)
    assert gate, out
    assert int(gate.group(5)) > 0


def _reading(frame: int, period_s: float, in_count: float, out_count: float) -> FrameOutput:
    row = {"line_id": "east_gate", "ts": frame / 10, "period_s": period_s, "in_count": in_count,
           "out_count": out_count, "flow_pmm": 0.0}
    return FrameOutput("view001", frame / 10, 0.0, [], [row], [], frame_index=frame)


def test_gate_tally_counts_the_annotated_crossings_of_the_frames_each_reading_covered():
    crossings = annotated_crossings()
    assert sum(d == "in" for _, lid, d in crossings if lid == "east_gate") == 18
    assert sum(d == "out" for _, lid, d in crossings if lid == "east_gate") == 13
    tally = GateTally(crossings, fps=10.0, frame_count=795)
    for frame in range(0, 795, 10):  # one reading a second covers every frame once
        tally.add(_reading(frame, 1.0, 0.25, 0.1))
    assert tally.truth["east_gate"] == [18, 13]
    assert tally.measured["east_gate"] == pytest.approx([80 * 0.25, 80 * 0.1])
    again = GateTally(crossings, fps=10.0, frame_count=795)
    for frame in range(795, 2 * 795, 10):  # the looped video's frames count again, wrapped
        again.add(_reading(frame, 1.0, 0.0, 0.0))
    assert sum(again.truth["east_gate"]) == 31
    (line,) = tally.summary()
    assert line.startswith("line east_gate: measured 20.0 in, 8.0 out vs annotated 18 in, 13 out")
