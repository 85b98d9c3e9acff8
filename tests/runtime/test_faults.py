"""Faults a site meets in the field, against real parts: for each, crowdsafe keeps measuring where it
can, reports the fault, loses no stored reading and duplicates none.

Covered elsewhere (tests/runtime/test_runner.py): stream server killed and restarted, PostgreSQL stopped
and restarted mid-run, SIGTERM, SIGKILL and restart, a SQLite lock held by another process.
Here: a stream that stalls (connection open, no data), a webhook receiver that is down, corrupt
frames inside a video and unreadable files in an image folder, and the store's disk filling up.

Runs are short (10-40 s) and use the int8 counter at reduced resolution; assertions are about what
must hold whatever the machine's speed.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter, EveryCamera
from crowdsafe.runtime.background import BackgroundPolicy
from crowdsafe.runtime.core import RunnerConfig, RunSummary, SiteRunner, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.rules import default_rules
from crowdsafe.store.store import open_store
from tests.support.runner import (
    ZONES,
    cli,
    demo_site,
    image_files_under,
    precision_flag,
    wait_for,
    zone_ts,
)
from tests.support.stream_servers import MjpegServer, free_port
from tests.support.webhooks import webhook_receiver

ANYONE = AlertRule("test_anyone", "count", raise_at=0.5, clear_at=0.1)


def start(site_file: Path, state: Path, counter: DensityCounter, *,
          background: BackgroundPolicy | None = None, store: Path | None = None,
          **config: object) -> tuple[SiteRunner, threading.Thread, dict[str, RunSummary]]:
    state.mkdir(parents=True, exist_ok=True)
    prepared = prepare_site(load_site(site_file))
    policy = background or BackgroundPolicy(min_frames=3, min_spacing_s=0)
    cfg = RunnerConfig(state_dir=state, background=policy, **config)  # type: ignore[arg-type]
    store_at = store or state / "crowdsafe.sqlite"
    runner = local_runner(prepared, open_store(store_at), EveryCamera(counter), cfg)
    result: dict[str, RunSummary] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", runner.run()), daemon=True)
    thread.start()
    return runner, thread, result


def assert_complete_and_unique(db: Path, summary: RunSummary, camera: str = "view001") -> set[float]:
    """Every counted frame stored, each zone once per frame: nothing lost, nothing duplicated."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = list(conn.execute("SELECT zone_id, ts FROM zone_readings"))
    stamps = {ts for _, ts in rows}
    assert len(rows) == len(set(rows)) == len(stamps) * len(ZONES)
    assert len(stamps) == summary.frames[camera]
    return stamps


# -- a stalled stream --------------------------------------------------------------------------------

def test_stalled_stream_is_reported_alerted_and_counting_resumes(tmp_path: Path,
                                                                 fast_counter: DensityCounter):
    """The camera keeps the connection open and stops sending (a hung encoder): the reader's read
    timeout notices, health says so, a stale-camera alert is raised, and after reconnecting the
    readings continue."""
    server = MjpegServer(fps=10, stall_after=40).start()  # 4 s of video on each connection, then silence
    state = tmp_path / "state"
    site = demo_site(tmp_path, every="1s", source=server.url, scale=0.5)
    rules = (*default_rules(), AlertRule("test_stale", "stale_s", raise_at=2.5, clear_at=1.0))
    try:
        runner, thread, result = start(site, state, fast_counter, duration_s=20, health_every_s=1,
                                       rules=rules)
        thread.join(80)
    finally:
        server.stop()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.errors == 0 and summary.flushed

    stream = runner.readers[0].cam.source.health  # type: ignore[attr-defined]
    stalls = [g for g in stream.gaps if "stalled" in g.reason]
    assert stalls and stalls[0].end is not None, f"stall not detected: {stream.gaps}"
    stamps = assert_complete_and_unique(state / "crowdsafe.sqlite", summary)
    assert any(t < stalls[0].start for t in stamps)
    assert any(t > stalls[0].end for t in stamps), "no readings after the stream came back"

    store = open_store(state / "crowdsafe.sqlite")
    health = store.query("camera_health")
    # While stalled the feed still looks "up" until the read timeout; from then on health says so.
    reported = [h for h in health if re.search(r"gaps [1-9]", h["message"]) and "stalled" in h["message"]]
    assert reported and reported[0]["ts"] > stalls[0].start
    stale = [a for a in store.alerts() if a["rule"] == "test_stale"]
    assert stale and stale[0]["subject"] == "view001"
    assert stalls[0].start < stale[-1]["raised_ts"]  # raised during the stall ...
    assert any(a["state"] == "cleared" for a in stale)  # ... and cleared when frames came back
    store.close()


# -- a webhook receiver that is down -----------------------------------------------------------------

def test_webhook_target_down_then_up_gets_every_alert_and_counting_never_waits(
        tmp_path: Path, fast_counter: DensityCounter, caplog: pytest.LogCaptureFixture):
    port = free_port()  # nobody listens here yet
    state = tmp_path / "state"
    db = state / "crowdsafe.sqlite"
    received: list[dict] = []
    caplog.set_level("WARNING", logger="crowdsafe.notify.webhooks")
    runner, thread, result = start(demo_site(tmp_path, scale=0.5), state, fast_counter, duration_s=16,
                                   health_every_s=2, rules=(*default_rules(), ANYONE),
                                   webhooks=(f"http://127.0.0.1:{port}/hook",))
    receiver: ThreadingHTTPServer | None = None
    try:
        assert wait_for(lambda: len(zone_ts(db)) >= 1, 40)
        notifier = runner.alerts.notifier
        assert notifier is not None
        assert wait_for(lambda: any("failed" in r.getMessage() for r in caplog.records), 20)
        frames_while_down = len(zone_ts(db))
        receiver = webhook_receiver(received, port=port)
        thread.join(80)
    finally:
        if receiver is not None:
            receiver.shutdown()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.errors == 0 and summary.flushed
    stamps = assert_complete_and_unique(db, summary)
    assert len(stamps) > frames_while_down  # counting went on while deliveries were retried
    store = open_store(db)
    expected = {(a["rule"], a["subject"]) for a in store.alerts() if a["rule"] == "test_anyone"}
    store.close()
    assert expected  # stored, and every one of them delivered once the receiver came up
    assert {(m["alert"]["rule"], m["alert"]["subject"]) for m in received} == expected
    assert notifier.stats.retries >= 1 and notifier.stats.dropped == 0
    warnings = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert warnings and all("Traceback" not in w for w in warnings)


def test_corrupt_video_frames_mid_run_are_skipped_and_counted_with_a_dead_webhook(
        tmp_path: Path, fast_counter: DensityCounter, corrupt_video: Path):
    """A looping video whose frames 4 and 5 are destroyed (a damaged recording, a bad network
    packet in an MJPEG feed): those frames are skipped and counted as errors in the camera's
    health, the neighbours are measured, and a receiver that never answers delays nothing."""
    state = tmp_path / "state"
    dead = f"http://127.0.0.1:{free_port()}/hook"
    t0 = time.monotonic()
    site = demo_site(tmp_path, every="0.5s", source=str(corrupt_video), scale=1 / 3)
    _, thread, result = start(site, state, fast_counter, duration_s=10, health_every_s=1,
                              rules=(*default_rules(), ANYONE), webhooks=(dead,))
    thread.join(60)
    took = time.monotonic() - t0
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.errors == 0 and summary.flushed
    assert summary.frames["view001"] >= 5
    assert took < 10 + 12, f"shutdown waited {took - 10:.1f} s on a dead webhook"
    assert summary.health[0].errors >= 1, "corrupt frames were not reported"
    assert_complete_and_unique(state / "crowdsafe.sqlite", summary)
    store = open_store(state / "crowdsafe.sqlite")
    assert store.query("camera_health")[-1]["errors"] >= 1
    raised = {a["subject"] for a in store.alerts() if a["rule"] == "test_anyone"}
    assert raised and raised <= ZONES  # the alerts are stored though never delivered
    store.close()


def test_unreadable_files_in_an_image_folder_are_skipped_and_reported(
        tmp_path: Path, fast_counter: DensityCounter, mall_jpeg: Path, truncated_jpeg: Path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    frame = cv2.resize(cv2.imread(str(mall_jpeg)), (256, 192), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "a_good.jpg"), frame)
    shutil.copy(truncated_jpeg, folder / "b_truncated.jpg")
    (folder / "c_empty.jpg").write_bytes(b"")
    (folder / "d_garbage.jpg").write_bytes(os.urandom(5000))
    (folder / "e_text.png").write_text("not an image")
    cv2.imwrite(str(folder / "f_good.jpg"), cv2.flip(frame, 1))
    state = tmp_path / "state"
    _, thread, result = start(demo_site(tmp_path, every="0.5s", source=str(folder), scale=1 / 3), state,
                              fast_counter, duration_s=8, health_every_s=1)
    thread.join(60)
    summary = result["summary"]
    assert summary.errors == 0 and summary.flushed
    assert summary.frames["view001"] >= 2
    assert_complete_and_unique(state / "crowdsafe.sqlite", summary)
    health = summary.health[0]
    assert health.errors >= 3, f"unreadable files not reported: {health}"
    assert health.last_error, "the camera's health does not say what was wrong"


# -- the store's disk fills up -----------------------------------------------------------------

@contextmanager
def small_disk(root: Path, size: str = "8m") -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``root``; yields 'tmpfs', or 'none' if mounting is not allowed."""
    root.mkdir(parents=True, exist_ok=True)
    mounted = (os.environ.get("CROWDSAFE_FULL_DISK") != "rlimit"  # to try the fallback where root may mount
               and os.geteuid() == 0 and shutil.which("mount") is not None
               and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                                   str(root)], capture_output=True).returncode == 0)
    try:
        yield "tmpfs" if mounted else "none"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


def fill_up(folder: Path) -> Path:
    """Write zeros until the filesystem refuses (ENOSPC); returns the filler file."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    small = b"\0" * 512
    with filler.open("ab", buffering=0) as fh:  # the last few KB too
        try:
            while True:
                fh.write(small)
        except OSError:
            pass
    return filler


class Lines:
    """A child's stdout or stderr read line by line in a thread (pipes are never size-limited)."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def frames(self) -> int:
        return sum(1 for line in list(self.lines) if re.match(r"\d\d:\d\d:\d\d view001: ", line))

    def join(self) -> None:
        self._thread.join(10)


def run_args(site: Path, state: Path) -> list[str]:
    args = cli(str(site), "--state-dir", str(state), "--precision", precision_flag(), "--health-every", "1")
    help_text = subprocess.run([*cli("--help")], capture_output=True, text=True).stdout
    if "--serve" in help_text:  # `run` also serves the API when it can: not wanted here
        args.append("--no-serve")
    return args


def test_disk_full_buffers_readings_and_catches_up_when_space_returns(tmp_path: Path):
    """The store's filesystem fills up (logs, another program): writes fail, readings are buffered
    in memory and reported, counting goes on; once there is room again everything is written,
    once. The disk is a real 8 MB tmpfs where root may mount one; otherwise the child's file size
    limit (RLIMIT_FSIZE, set from outside with prlimit) stands in for a full disk."""
    disk = tmp_path / "disk"
    site = demo_site(tmp_path, every="1s", scale=0.5)
    with small_disk(disk) as kind:
        state = disk / "state"
        db = state / "crowdsafe.sqlite"
        proc = subprocess.Popen(run_args(site, state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        make_full: Callable[[], object]
        make_room: Callable[[], object]
        if kind == "tmpfs":
            fillers: list[Path] = []
            make_full = lambda: fillers.append(fill_up(disk))  # noqa: E731
            make_room = lambda: fillers.pop().unlink()  # noqa: E731
        else:
            kind = "rlimit"
            unlimited = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
            make_full = lambda: resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (4096, unlimited[1]))  # noqa: E731
            make_room = lambda: resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, unlimited)  # noqa: E731
        print(f"full disk simulated with: {kind}")
        try:
            assert wait_for(lambda: len(zone_ts(db)) >= 2 or proc.poll() is not None, 120), \
                "\n".join(err.lines)
            make_full()
            full_from = time.time()
            counted_before = out.frames()
            assert wait_for(lambda: err.has("store unavailable"), 30), "\n".join(err.lines[-20:])
            assert wait_for(lambda: out.frames() >= counted_before + 3, 60)  # counting goes on meanwhile
            full_until = time.time()
            make_room()
            assert wait_for(lambda: err.has("store back after"), 40), "\n".join(err.lines[-20:])
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        out.join()
        err.join()
        assert proc.returncode == 0, "\n".join(err.lines[-30:])
        summary = "\n".join(out.lines[-6:])
        assert re.search(r", 0 failed", summary) and "0 unwritten" in summary, summary
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = list(conn.execute("SELECT zone_id, ts FROM zone_readings"))
        stamps = {ts for _, ts in rows}
        assert len(rows) == len(set(rows)) == len(stamps) * len(ZONES)  # whole frames, no duplicates
        assert len(stamps) == out.frames(), "a counted frame did not reach the store"
        assert any(full_from < t < full_until for t in stamps), "readings taken while full were lost"
        # A background that could not be written leaves nothing behind: no half JPEG, no temp file.
        folder = state / "backgrounds"
        leftovers = [p.name for p in folder.glob("*")] if folder.exists() else []
        assert all(name in ("view001.jpg", "view001.json") for name in leftovers), leftovers
        assert [p.name for p in image_files_under(state)] == [n for n in leftovers if n.endswith(".jpg")]
        log = "\n".join(err.lines)
        assert "Traceback" not in log
        print("\n".join(ln for ln in err.lines if "background" in ln or "store" in ln))


def test_a_background_that_cannot_be_written_costs_no_reading(tmp_path: Path, fast_counter: DensityCounter,
                                                              caplog: pytest.LogCaptureFixture):
    """The state dir (where backgrounds go) is full, the store is elsewhere: every background
    write fails, is logged, leaves no partial file, and every frame's readings are still stored."""
    state = tmp_path / "state"
    db = tmp_path / "store" / "crowdsafe.sqlite"
    db.parent.mkdir()
    with small_disk(state, size="256k") as kind:
        if kind != "tmpfs":
            pytest.skip("needs root to mount a small tmpfs (CROWDSAFE_FULL_DISK=rlimit or not root)")
        fill_up(state)
        caplog.set_level("ERROR", logger="crowdsafe.runtime.core")
        # every check passes (no people-free gate), so every check tries to write
        policy = BackgroundPolicy(min_frames=3, min_spacing_s=0, check_every_s=1, retry_s=1, max_people=1e6,
                                  settle_share=0.0, person_window_people=1e9)
        _, thread, result = start(demo_site(tmp_path, every="0.5s", scale=1 / 3), state, fast_counter,
                                  background=policy, store=db, duration_s=8, health_every_s=2)
        thread.join(60)
        summary = result["summary"]
        leftovers = sorted(p.name for p in state.rglob("*") if p.name != "filler.bin")
    assert summary.errors == 0 and summary.flushed and summary.backgrounds == 0
    assert summary.frames["view001"] >= 4
    assert any("background not written" in r.getMessage() for r in caplog.records)
    assert_complete_and_unique(db, summary)
    assert leftovers in ([], ["backgrounds"]), leftovers  # no half-written picture, no temp file
