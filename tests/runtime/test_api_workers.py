"""`crowdsafe run --api-workers N`: the API in processes of its own beside the counting one.

A real run of the demo site (the real network): live readings, runtime metrics, an operator's
background capture with the pipeline's refusal, and a live stream all come through the worker
processes; Ctrl-C stops everything with no worker left behind, and so does killing the counting
process outright.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from crowdsafe.api.tokens import TokenBook
from tests.support.postgres_server import pg_bin, postgres_cluster
from tests.support.runner import ZONES, cli, demo_site, precision_flag, wait_for


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"crowdsafe.api.workers" in command:
            found.append(int(entry.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _events_until_a_zone(url: str, headers: dict[str, str]) -> list[str]:
    """The live feed's event names, from its greeting up to its first zone reading."""
    seen: list[str] = []
    with httpx.stream("GET", url + "/api/events", headers=headers, timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                seen.append(line[6:].strip())
            if "zone" in seen:
                break
    return seen


class Run:
    def __init__(self, tmp_path: Path, workers: int, store: str | None = None) -> None:
        self.state = tmp_path / "state"
        book = TokenBook(self.state / "tokens.json")
        self.tokens = {role: book.create(role)[1] for role in ("viewer", "operator")}
        self.proc = subprocess.Popen(
            cli(str(demo_site(tmp_path, every="1s")), "--state-dir", str(self.state), "--precision",
                precision_flag(), "--port", "0", "--quiet", "--api-workers", str(workers),
                *(("--store", store) if store else ())),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.out: list[str] = []
        self.drains = [threading.Thread(target=lambda s=s, sink=sink: sink.extend(s), daemon=True)
                       for s, sink in ((self.proc.stderr, self.err), (self.proc.stdout, self.out))]
        for drain in self.drains:
            drain.start()

    def url(self) -> str:
        found = wait_for(lambda: any("dashboard and API" in ln for ln in self.err)
                         or self.proc.poll() is not None, 120)
        assert found and self.proc.poll() is None, "".join(self.err)
        return next(m.group(1) for ln in self.err
                    if (m := re.search(r"dashboard and API: (http://127\.0\.0\.1:\d+)/", ln)))

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def workers(self, expected: int) -> list[int]:
        found = _workers_of(self.proc.pid)
        assert len(found) == expected
        return found

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_api_workers_serve_live_state_and_operator_actions_and_end_with_the_run(tmp_path: Path):
    with Run(tmp_path, workers=2) as run:
        url = run.url()
        workers = run.workers(2)
        viewer = run.headers("viewer")

        def live_zones() -> list[dict[str, object]]:
            zones = httpx.get(url + "/api/zones", headers=viewer, timeout=10).json()
            return [z for z in zones if z["reading"]]

        assert wait_for(lambda: {z["id"] for z in live_zones()} == ZONES, 90)
        # the runner's own numbers: a worker copies them every 0.5 s, so the first zone rows (which
        # a worker may read from the store) can come before the copy that holds a counted frame
        def runner_metrics() -> bool:
            metrics = httpx.get(url + "/metrics", headers=viewer, timeout=10).text
            return bool(re.search(r'crowdsafe_frames_processed_total\{camera="view001"\} [1-9]', metrics)
                        and re.search(r'crowdsafe_pipeline_latency_seconds\{camera="view001"\} \d', metrics))

        assert wait_for(runner_metrics, 10, step=0.2)
        # the pipeline answers the operator across the boundary: people are in view, so a 409 with its reason
        r = httpx.post(url + "/api/cameras/view001/background/capture", headers=run.headers("operator"),
                       timeout=30)
        assert r.status_code == 409, r.text
        assert "no runner" not in r.text and "not answering" not in r.text
        seen = _events_until_a_zone(url, run.headers("operator"))
        assert seen[0] == "hello" and "zone" in seen
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(60) == 0
    for drain in run.drains:
        drain.join(10)
    assert "0 unwritten" in "".join(run.out)
    assert wait_for(lambda: not _alive(workers), 10), "API workers outlived the run"


def test_api_workers_end_when_the_counting_process_is_killed(tmp_path: Path):
    with Run(tmp_path, workers=1) as run:
        url = run.url()
        workers = run.workers(1)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(10)
    started = time.monotonic()
    assert wait_for(lambda: not _alive(workers), 15), "an API worker outlived its counting process"
    assert time.monotonic() - started < 15


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL server binaries not installed "
                                            "(apt-get install postgresql)")
def test_api_workers_serve_a_postgresql_store_and_live_state(tmp_path: Path):
    """Production's store: the workers read zone rows from PostgreSQL and live events from the channel."""
    with postgres_cluster() as (db, _pg), Run(tmp_path, workers=2, store=db) as run:
        url = run.url()
        run.workers(2)
        viewer = run.headers("viewer")

        def live() -> set[str]:
            zones = httpx.get(url + "/api/zones", headers=viewer, timeout=10).json()
            return {z["id"] for z in zones if z["reading"]}

        assert wait_for(lambda: live() == ZONES, 90)
        seen = _events_until_a_zone(url, viewer)
        assert seen[0] == "hello" and "zone" in seen
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(60) == 0
        engine = sqlalchemy.create_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT DISTINCT zone_id FROM zone_readings"))
            zones = {z for (z,) in rows}
        engine.dispose()
        assert zones == ZONES
    for drain in run.drains:
        drain.join(10)
    assert "0 unwritten" in "".join(run.out)
