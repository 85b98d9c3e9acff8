"""`crowdsafe run`: the local runner against real parts (bundled video, MJPEG server, SQLite, PostgreSQL).

The network is slow on 2 shared cores (~1.5-3 s per 768x576 frame in int8), so runs are short
and sample every 2 s; assertions are about what must hold whatever the speed (readings there
and sensible, nothing duplicated, nothing lost, only the background image on disk).
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.api.tokens import TokenBook
from crowdsafe.cli.main import app
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter, DensityResult, EveryCamera
from crowdsafe.runtime.background import BackgroundPolicy, CameraBackground
from crowdsafe.runtime.camera import CameraReader, CameraSource, Sample
from crowdsafe.runtime.core import RunnerConfig, RunSummary, SiteRunner, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.rules import default_rules
from crowdsafe.sources.looping import LoopingVideoSource
from crowdsafe.store.store import open_store
from tests.support.postgres_server import pg_bin, postgres_cluster
from tests.support.runner import (
    VIDEO,
    ZONES,
    cli,
    demo_site,
    image_files_under,
    precision_flag,
    wait_for,
    zone_ts,
)
from tests.support.stream_servers import MjpegServer
from tests.support.webhooks import webhook_receiver


def run_in_thread(site_file: Path, store_target: str, state_dir: Path, counter: DensityCounter,
                  **config: object) -> tuple[SiteRunner, threading.Thread, dict[str, RunSummary]]:
    prepared = prepare_site(load_site(site_file))
    store = open_store(store_target)
    # every sampled frame may enter the background ring, so a short run publishes one
    policy = BackgroundPolicy(min_frames=3, min_spacing_s=0)
    cfg = RunnerConfig(state_dir=state_dir, background=policy, **config)  # type: ignore[arg-type]
    runner = local_runner(prepared, store, EveryCamera(counter), cfg)
    result: dict[str, RunSummary] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", runner.run()), daemon=True)
    thread.start()
    return runner, thread, result


def test_bad_site_file_and_missing_source_exit_2_with_one_line(tmp_path: Path):
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncameras: []\n")
    result = runner.invoke(app, ["run", str(bad), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "cameras" in result.output and "Traceback" not in result.output
    missing = demo_site(tmp_path, source=str(tmp_path / "nope.avi"))
    result = runner.invoke(app, ["run", str(missing), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "cameras[0].source" in result.output and "no such file" in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1


def test_looping_video_is_paced_timestamped_with_wall_clock_and_loops(tmp_path: Path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    source = LoopingVideoSource(clip, loop=True)
    start = time.time()
    frames = []
    for frame in source:
        frames.append(frame.timestamp)
        if len(frames) == 10:
            source.stop()
    assert source.loops >= 2
    steps = np.diff(frames)
    assert np.allclose(steps, 0.05, atol=1e-3)  # the container's frame interval, across loops too
    assert abs(frames[0] - start) < 0.5 and time.time() - start >= 0.4  # paced, not decoded flat out


def test_reader_decodes_only_the_sampled_frames_and_their_pairs(tmp_path: Path):
    """A live reader consumes every frame but converts to pixels only what it samples (grab/skip)."""
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(40):
        writer.write(np.full((48, 64, 3), 5 * i, np.uint8))
    writer.release()
    source = LoopingVideoSource(clip, loop=True)
    decoded: list[int] = []
    retrieve = source._retrieve

    def counting(cap: cv2.VideoCapture, position: int) -> np.ndarray | None:
        decoded.append(position)
        return retrieve(cap, position)

    source._retrieve = counting  # type: ignore[method-assign]
    cam = CameraSource("c", source, every=0.5, pairs=True, size=(64, 48), nominal_fps=20.0)
    slots: LatestSlots[Sample] = LatestSlots()
    reader = CameraReader(cam, slots)
    reader.start()
    time.sleep(2.6)
    reader.stop()
    assert reader.join(5)
    health = reader.health()
    assert health.frames_read >= 30  # read in real time: 20 fps for 2.6 s (52 frames when idle)
    assert health.samples >= 3
    assert len(decoded) in (2 * health.samples, 2 * health.samples + 1)  # + a sample awaiting its pair
    taken = slots.take(timeout=1)
    assert taken is not None
    sample = taken[1]
    assert sample.pair is not None and sample.pair_dt == pytest.approx(0.05, abs=1e-3)
    assert sample.frame_index is not None and 0 <= sample.frame_index < 40


def test_background_ring_takes_frames_spaced_in_time_so_walkers_leave_the_median():
    """At 1 s sampling a walker is in most of a ring of consecutive frames, and so in the median:
    the ring takes frames at least ``min_spacing_s`` apart (jittered), whatever the sampling."""
    policy = BackgroundPolicy(min_spacing_s=15.0, spacing_jitter=0.5, min_frames=7)
    model = CameraBackground(policy)
    cap = cv2.VideoCapture(str(VIDEO))
    kept: list[float] = []
    for second in range(180):  # three minutes of the 10 fps video sampled every second, looped
        cap.set(cv2.CAP_PROP_POS_FRAMES, (second * 10) % 795)
        ok, frame = cap.read()
        assert ok
        due = model._next_add
        model.add_counted(frame, 20.0, ts=float(second))
        if model._next_add != due:  # this frame went into the ring
            kept.append(float(second))
    cap.release()
    gaps = np.diff(kept)
    assert 180 / 22.5 - 1 <= len(kept) <= 180 / 15 + 1
    assert gaps.min() >= 15.0 and gaps.max() <= 22.5 + 1
    assert len(set(np.round(gaps))) > 1  # jittered: not locked to one phase of a periodic scene
    assert model.ready
    # No spacing: every sampled frame enters the ring.
    dense = CameraBackground(BackgroundPolicy(min_spacing_s=0))
    for second in range(10):
        dense.add_counted(np.full((48, 64, 3), second, np.uint8), 20.0, ts=float(second))
    assert len(dense._ring) == 10


def test_background_check_counts_at_the_frames_own_size():
    """The ring keeps 640-pixel frames, but the counter gets them back at the camera's size: an
    engine holds one compiled network per input shape, and a second shape costs native memory."""
    model = CameraBackground(BackgroundPolicy(min_spacing_s=0, min_frames=3))
    for second in range(5):
        model.add_counted(np.full((576, 768, 3), 40 + second, np.uint8), 1.0, ts=float(second))
    assert model._ring[0].shape == (480, 640, 3)
    shapes: list[tuple[int, ...]] = []

    def count(image: np.ndarray) -> DensityResult:
        shapes.append(image.shape)
        h, w = image.shape[:2]
        return DensityResult(np.zeros((h // 8, w // 8), np.float32), h, w)

    check = model.check(count, ts=5.0)
    assert shapes == [(576, 768, 3), (576, 768, 3)]
    assert check.published and check.image is not None and check.image.shape == (480, 640, 3)
    # A camera counting only a region: the picture is blanked where no density check looked.
    model._next_check = None
    boxed = model.check(count, ts=6.0, counted_box=(96, 48, 480, 432))
    assert boxed.image is not None and boxed.image.shape == (480, 640, 3)
    assert (boxed.image[:40] == 128).all() and (boxed.image[:, 400:] == 128).all()
    assert np.array_equal(boxed.image[40:360, 80:400], check.image[40:360, 80:400])


# -- full runs ---------------------------------------------------------------------------------

def test_demo_site_run_stores_readings_health_and_only_a_background_image(tmp_path: Path,
                                                                         fast_counter: DensityCounter):
    state = tmp_path / "state"
    db = state / "crowdsafe.sqlite"
    state.mkdir()
    started = time.time()
    received: list[dict] = []
    hook = webhook_receiver(received)
    rules = (*default_rules(), AlertRule("test_anyone", "count", raise_at=0.5, clear_at=0.1))
    try:
        _, thread, result = run_in_thread(demo_site(tmp_path), str(db), state, fast_counter, duration_s=20,
                                          health_every_s=3, rules=rules,
                                          webhooks=(f"http://127.0.0.1:{hook.server_port}/hook",))
        thread.join(60)
    finally:
        hook.shutdown()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.errors == 0 and summary.flushed
    assert summary.frames["view001"] >= 3

    store = open_store(db)
    zones = store.query("zone_readings")
    assert {z["zone_id"] for z in zones} == ZONES
    n_frames = len({z["ts"] for z in zones})
    assert n_frames == summary.frames["view001"]
    for z in zones:
        assert started - 1 <= z["ts"] <= time.time()
        assert 0 <= z["count"] < 100 and z["density"] is not None and 0 <= z["density"] < 1
        assert z["los"] in "ABCDEF" and z["risk"] == "normal"
        assert 0 < z["coverage_pct"] <= 100 and z["area_m2"] > 100
    walkway = [z for z in zones if z["zone_id"] == "walkway"]
    assert all(z["coverage_pct"] > 90 for z in walkway)

    lines = store.query("line_readings")
    assert len(lines) == n_frames and {ln["line_id"] for ln in lines} == {"east_gate"}
    assert lines[0]["period_s"] == 2.0  # the first covers one sampling period
    for ln, previous in zip(lines[1:], lines, strict=False):
        assert math.isclose(ln["period_s"], ln["ts"] - previous["ts"], abs_tol=1e-3)  # gap-free coverage
    for ln in lines:
        assert ln["in_count"] >= 0 and ln["out_count"] >= 0 and ln["flow_pmm"] >= 0
        assert math.isclose(ln["flow_pmm"], (ln["in_count"] + ln["out_count"]) / ln["period_s"] * 60 / 13.5,
                            rel_tol=0.1)  # the whole gate is in view (visible fraction ~1)
    assert sum(ln["in_count"] + ln["out_count"] for ln in lines) > 0  # people do walk through

    health = store.query("camera_health")
    assert len(health) >= 4 and {h["camera_id"] for h in health} == {"view001"}
    assert any(h["status"] == "up" and h["fps"] > 5 for h in health)
    assert health[-1]["status"] == "stopped"

    raised = store.alerts()
    # Nobody ever stands in the forecourt: with density placed at head height it holds no one.
    expected = {("test_anyone", z) for z in ZONES - {"forecourt"}}
    assert {(a["rule"], a["subject"]) for a in raised} == expected
    assert all(a["state"] == "raised" for a in raised)
    assert {(m["alert"]["rule"], m["alert"]["subject"]) for m in received} == expected
    assert all(m["site"] == "PETS 2009 campus (demo)" for m in received)

    # 20 s is too short for a picture to pass the people-free checks (frames over minutes):
    # no image anywhere, and the note the API shows says why.
    background = state / "backgrounds" / "view001.jpg"
    images = [background] if background.is_file() else []
    if images:
        image = cv2.imread(str(background))
        assert image is not None and image.shape == (480, 640, 3)
    assert image_files_under(state) == images
    assert image_files_under(tmp_path) == images
    assert (state / "backgrounds" / "view001.json").is_file()


def test_stream_camera_keeps_going_through_a_server_restart(tmp_path: Path, fast_counter: DensityCounter):
    server = MjpegServer(fps=10).start()
    state = tmp_path / "state"
    db = state / "crowdsafe.sqlite"
    state.mkdir()
    site = demo_site(tmp_path, every="1s", source=server.url, scale=0.5)
    _, thread, result = run_in_thread(site, str(db), state, fast_counter, duration_s=24,
                                      health_every_s=1)
    try:
        assert wait_for(lambda: len(zone_ts(db)) >= 2, 20)
        server.stop()
        outage_start = time.time()
        time.sleep(5)
        server = MjpegServer(port=server.port, fps=10).start()
        restarted = time.time()
        thread.join(60)
    finally:
        server.stop()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.errors == 0

    store = open_store(db)
    stamps = sorted(zone_ts(db))
    assert any(t < outage_start for t in stamps)
    assert any(t > restarted for t in stamps), "no readings after the stream came back"
    health = store.query("camera_health")
    during = [h for h in health if outage_start + 1 < h["ts"] < restarted]
    assert during and all(h["status"] in ("reconnecting", "connecting") for h in during)
    last = health[-1]
    assert "reconnects 0" not in last["message"] and "gaps 0" not in last["message"]
    assert any(h["status"] == "up" and h["ts"] > restarted for h in health)
    final = summary.health[0]
    assert final.reconnects >= 1 and final.gaps >= 1 and final.last_gap_s is not None


def test_sigterm_exits_0_promptly_with_every_counted_frame_stored(tmp_path: Path):
    """`run` also serves the API from the same process, with the runner's live state in /metrics."""
    state = tmp_path / "state"
    db = state / "crowdsafe.sqlite"
    token = TokenBook(state / "tokens.json").create("viewer")[1]
    proc = subprocess.Popen(cli(str(demo_site(tmp_path)), "--state-dir", str(state), "--precision",
                                precision_flag(), "--health-every", "2", "--port", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    out_lines: list[str] = []
    drain = threading.Thread(target=lambda: err_lines.extend(proc.stderr or []), daemon=True)
    drain_out = threading.Thread(target=lambda: out_lines.extend(proc.stdout or []), daemon=True)
    drain.start()
    drain_out.start()
    try:
        assert wait_for(lambda: len(zone_ts(db)) >= 2 or proc.poll() is not None, 90)
        url = next(m.group(1) for ln in list(err_lines)
                   if (m := re.search(r"dashboard and API: (http://127\.0\.0\.1:\d+)/", ln)))
        headers = {"Authorization": f"Bearer {token}"}
        zones = httpx.get(url + "/api/zones", headers=headers, timeout=10).json()
        assert {z["id"] for z in zones if z["reading"]} == ZONES
        metrics = httpx.get(url + "/metrics", headers=headers, timeout=10).text
        assert re.search(r'crowdsafe_pipeline_latency_seconds\{camera="view001"\} \d', metrics)
        assert re.search(r'crowdsafe_camera_fps\{camera="view001"\} \d', metrics)
        assert "crowdsafe_pipeline_queue_depth" in metrics
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        # the drain threads alone read the pipes (communicate() would race them for lines)
        drain.join(10)
        drain_out.join(10)
        out = "".join(out_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 15
    printed = [ln for ln in out.splitlines() if re.match(r"\d\d:\d\d:\d\d view001: ", ln)]
    assert len(printed) == len(zone_ts(db)) >= 2  # every counted frame reached the store
    assert "SIGTERM" in err
    assert "0 unwritten" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/health", timeout=2)  # the API went with the runner


def test_taken_api_port_fails_before_the_engine_starts(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(cli(str(demo_site(tmp_path)), "--state-dir", str(tmp_path / "s"),
                                    "--port", str(port)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"--port {port}" in result.stderr and "--no-serve" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_sigkill_leaves_a_readable_store_and_a_restart_appends_without_duplicates(tmp_path: Path):
    state = tmp_path / "state"
    db = state / "crowdsafe.sqlite"
    args = cli(str(demo_site(tmp_path)), "--state-dir", str(state), "--precision", precision_flag(),
               "--health-every", "1", "--quiet", "--no-serve")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(zone_ts(db)) >= 2, 90)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        before = set(conn.execute("SELECT zone_id, ts, count FROM zone_readings"))
        health_before = conn.execute("SELECT COUNT(*) FROM camera_health").fetchone()[0]
    assert len(before) >= 2 * len(ZONES) and health_before >= 1

    again = subprocess.run([*args, "--duration", "8"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        after = list(conn.execute("SELECT zone_id, ts, count FROM zone_readings"))
    assert before <= set(after)  # nothing already stored was lost or changed
    assert len(after) == len(set((z, t) for z, t, _ in after)) > len(before)  # appended, no duplicate keys


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL server binaries not installed "
                                            "(apt-get install postgresql)")
def test_postgresql_run_buffers_through_a_database_outage(tmp_path: Path, fast_counter: DensityCounter):
    with postgres_cluster() as (url, pg):
        state = tmp_path / "state"
        state.mkdir()
        runner, thread, result = run_in_thread(demo_site(tmp_path), url, state, fast_counter, duration_s=26,
                                               health_every_s=2)
        store = open_store(url)
        try:
            assert wait_for(lambda: len(store.query("zone_readings")) >= 2 * len(ZONES), 30)
            pg.stop()
            down = time.time()
            time.sleep(7)
            up = time.time()
            pg.start()
            thread.join(60)
        finally:
            runner.request_stop("test cleanup")
            thread.join(30)
        summary = result["summary"]
        assert summary.flushed and summary.store.failures >= 1 and summary.store.pending == 0
        zones = store.query("zone_readings")
        stamps = {z["ts"] for z in zones}
        assert len(zones) == len(stamps) * len(ZONES)  # complete frames, no duplicates
        assert any(down < t < up for t in stamps), "readings taken while the database was down were lost"
        assert len(stamps) == summary.frames["view001"]
        assert len(store.query("line_readings")) == len(stamps)
        assert store.query("camera_health")
        store.close()


def test_sqlite_lock_delays_writes_without_losing_rows(tmp_path: Path, fast_counter: DensityCounter):
    """A writer holding the SQLite lock (another process, a backup) delays writes; it loses none."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "crowdsafe.sqlite"
    open_store(db).close()
    _, thread, result = run_in_thread(demo_site(tmp_path), str(db), state, fast_counter, duration_s=18,
                                      health_every_s=2)
    assert wait_for(lambda: len(zone_ts(db)) >= 1, 30)
    blocker = sqlite3.connect(db, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    time.sleep(8)  # longer than the store's 5 s busy timeout
    blocker.rollback()
    blocker.close()
    thread.join(60)
    summary = result["summary"]
    assert summary.flushed and summary.store.failures >= 1
    assert len(zone_ts(db)) == summary.frames["view001"]
    assert os.path.getsize(db) > 0


def test_a_bare_counter_is_refused_when_the_runner_is_built(tmp_path: Path, fast_counter: DensityCounter):
    """The runner counts each camera with its own counter; a single one must say so (EveryCamera)."""
    prepared = prepare_site(load_site(demo_site(tmp_path, scale=1 / 3)))
    with pytest.raises(TypeError, match="EveryCamera"):
        local_runner(prepared, open_store(tmp_path / "s.sqlite"), fast_counter,  # type: ignore[arg-type]
                     RunnerConfig(state_dir=tmp_path / "state"))


def test_runner_snapshot_keeps_the_newest_row_per_zone():
    """What /api/zones reads beside a runner (issue 16): newest by ts, whichever camera wrote it."""
    from types import SimpleNamespace

    holder = SimpleNamespace(_latest_rows={"zone_readings": {}, "line_readings": {}})
    assert SiteRunner.latest_rows(holder, "zone_readings") is None  # nothing yet: the store answers
    first = [{"zone_id": "walkway", "ts": 10.0, "count": 5}]
    SiteRunner._remember(holder, "zone_readings", "zone_id", first)
    SiteRunner._remember(holder, "zone_readings", "zone_id", [{"zone_id": "walkway", "ts": 9.0, "count": 9},
                                                               {"zone_id": "lawn", "ts": 9.5, "count": 2}])
    rows = {r["zone_id"]: r for r in SiteRunner.latest_rows(holder, "zone_readings")}
    assert rows["walkway"]["count"] == 5 and rows["lawn"]["count"] == 2  # a late, older row loses
