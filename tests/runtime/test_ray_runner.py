"""The Ray runner on a real local Ray (2 CPUs): readings stored, actors killed and restarted, CLI.

One Ray instance serves the module (starting it costs seconds on 2 cores). The site is the demo
site at a third of its resolution, seen by two cameras (the bundled video twice), so frames are
cheap to count and the two model replicas both get work. What is asserted holds whatever the
speed: readings for every camera, every frame's readings stored exactly once, readings resume
after each kill.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import load_site
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.runtime.background import BackgroundPolicy
from crowdsafe.runtime.core import RunnerConfig, prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.pipeline import FrameOutput
from crowdsafe.runtime.ray.runner import RayConfig, RayCounting, RaySummary, ray_runner, summary_line
from crowdsafe.store.store import open_store

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'crowdsafe[ray]'")

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
VIDEO = DEMO.parent / "vtest.avi"
SCALE = 1 / 3


def precision() -> str:
    plan = Path(str(resources.files("crowdsafe.counting") / "int8_plan.json"))
    return "int8" if plan.is_file() else "fp32"


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    # "local": always a new instance, never a cluster some other run left on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def two_camera_site(tmp_path: Path, every: str = "1s", *, source: Path = VIDEO, cameras: int = 2) -> Path:
    """The demo site scaled to 256x192, with a second camera on the same video (unless ``cameras=1``)."""
    data = yaml.safe_load(DEMO.read_text())
    cam = data["cameras"][0]
    cam["source"] = str(source)
    cam["sampling"] = {"every": every}
    cal = cam["calibration"]
    cal["image_size"] = [round(v * SCALE) for v in cal["image_size"]]
    cal["image_points"] = [[u * SCALE, v * SCALE] for u, v in cal["image_points"]]
    cal["focal_px"] *= SCALE
    cal["principal_point"] = [v * SCALE for v in cal["principal_point"]]
    second = yaml.safe_load(yaml.safe_dump(cam))
    second["id"] = "view002"
    if cameras == 2:
        data["cameras"].append(second)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Run:
    """A runner counting on Ray, on its own thread, with every emitted frame recorded."""

    def __init__(self, tmp_path: Path, duration_s: float, **ray_config: object) -> None:
        """Starts at once; ``ray_config`` goes to :class:`RayConfig`."""
        self.db = tmp_path / "ray.sqlite"
        self.outputs: list[FrameOutput] = []
        prepared = prepare_site(load_site(two_camera_site(tmp_path)))
        config = RunnerConfig(state_dir=tmp_path / "state", duration_s=duration_s, health_every_s=2.0,
                              background=BackgroundPolicy(min_frames=3))
        self.counting = RayCounting(prepared, EngineSpec(precision=precision()), RayConfig(**ray_config))  # type: ignore[arg-type]
        self.runner = ray_runner(prepared, open_store(self.db), self.counting, config,
                                 on_frame=self.outputs.append)
        self.result: dict[str, RaySummary] = {}
        self.thread = threading.Thread(target=lambda: self.result.setdefault("s", self.runner.run()),
                                       daemon=True)
        self.thread.start()

    def frames_after(self, t: float) -> int:
        return sum(1 for o in list(self.outputs) if o.ts > t)

    def wait(self, predicate: object, timeout: float, step: float = 0.2) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.thread.is_alive():
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(step)
        return bool(predicate())  # type: ignore[operator]

    def finish(self, timeout: float = 90) -> RaySummary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "runner did not stop"
        return self.result["s"]

    def stored(self, table: str) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            key = "zone_id" if table == "zone_readings" else "line_id"
            return list(conn.execute(f"SELECT {key}, ts FROM {table}"))


def assert_stored_exactly_once(run: Run, summary: RaySummary) -> None:
    emitted = [(z.zone_id, z.ts) for o in run.outputs for z in o.zones]
    stored = run.stored("zone_readings")
    assert sorted(stored) == sorted(emitted)  # every emitted reading stored, none twice
    assert len(set(emitted)) == len(emitted)  # and no frame was measured twice
    lines = [(r["line_id"], r["ts"]) for o in run.outputs for r in o.line_rows]
    assert sorted(run.stored("line_readings")) == sorted(lines)
    assert summary.store.ignored == 0 and summary.store.dropped == 0 and summary.flushed


def test_site_on_ray_survives_reader_and_replica_kills_storing_each_reading_once(tmp_path: Path, local_ray):
    """The whole path on a real local Ray: two cameras, two per-core replicas, a reader and a
    replica killed mid-run; readings for both cameras, each stored exactly once."""
    # The test stops the run itself; the duration is only a backstop, long enough that the waits
    # below (each bounded) never race it on a loaded machine.
    run = Run(tmp_path, duration_s=240.0)
    assert run.wait(lambda: len(run.outputs) >= 4, 40), "no frames before the kills"
    live = run.runner.live_stats()  # what the API's /metrics shows, from the driver's own state
    assert sum(live.frames.values()) >= 4 and set(live.camera_fps) == {"view001", "view002"}

    reader = run.counting.remote["view001"].handle
    pid_before = ray.get(reader.info.remote()).pid
    killed_at = time.time()
    ray.kill(reader, no_restart=False)  # the process dies; Ray restarts the actor
    assert run.wait(lambda: sum(1 for o in list(run.outputs)
                                if o.camera_id == "view001" and o.ts > killed_at + 1) >= 2, 40), \
        "camera view001 did not come back after its reader was killed"
    assert ray.get(reader.info.remote()).pid != pid_before
    assert ray.get(reader.info.remote()).restarted

    # Kill a replica while it holds a frame (a few tries: a frame takes ~0.1 s to count): the frame
    # goes back to its camera and is counted by the other replica.
    for _ in range(5):
        # Polled far finer than a frame's time in flight: at 0.2 s steps the poll can stay in phase
        # with the 1 s sampling and never see a frame in hand on a quiet machine.
        assert run.wait(lambda: bool(run.counting._in_flight), 20, step=0.002)
        job = next(iter(list(run.counting._in_flight.values())), None)
        if job is None:
            continue
        killed_at = time.time()
        ray.kill(run.counting.replicas[job.replica], no_restart=False)
        run.wait(lambda: run.counting.stats.replica_failures > 0, 3)
        assert run.wait(lambda: all(run.counting._replica_up), 40), "the killed replica did not come back"
        if run.counting.stats.replica_failures:
            break
    assert run.counting.stats.replica_failures >= 1, "never caught a replica with a frame in hand"
    assert run.wait(lambda: run.frames_after(killed_at + 1) >= 4, 40), "no readings after the replica kill"
    run.runner.request_stop("test done")
    summary = run.finish()

    assert summary.ray.reader_failures >= 1
    assert_stored_exactly_once(run, summary)
    ts = [o.ts for o in run.outputs if o.camera_id == "view001"]
    assert all(b > a for a, b in itertools.pairwise(ts))  # each instant measured once, in order

    assert min(summary.frames.get(c, 0) for c in ("view001", "view002")) >= 3
    assert summary.errors == 0
    stats = summary.ray
    assert len(stats.replicas) == 2 and {r.device for r in stats.replicas} == {"CPU"}
    assert len({r.pid for r in stats.replicas}) == 2  # two per-core engines, two processes
    assert stats.frames == summary.frames_total
    # 256x192 JPEG frames (+ the flow pair for the camera that sees the line) are a few KiB.
    assert 1_000 < stats.bytes_per_frame < 2 * 256 * 192 * 3 / 4
    assert stats.round_trip_s >= stats.infer_s > 0
    counts = [o.count for o in run.outputs]
    assert all(0.5 < c < 30 for c in counts), counts  # people at a third of the resolution: a few
    assert run.stored("line_readings")  # the east gate is measured (flow pairs crossed the wire)
    with sqlite3.connect(run.db) as conn:
        health = {r[0] for r in conn.execute("SELECT camera_id FROM camera_health")}
    assert health == {"view001", "view002"}
    assert "2 replica(s)" in summary_line(stats) and "restarts: readers" in summary_line(stats)


def test_ray_and_local_runs_store_the_same_readings_for_the_same_frames(tmp_path: Path, local_ray):
    """Counting is the only thing a cluster changes (issue 17): the same frames, counted in this
    process or on a replica, are measured by the same core into the same stored readings.

    The frames are still images shown one per sampling period, so both runs see every one of
    them whatever their start time; PNG on the wire and fp32 on one thread each, so the replica's
    density is the in-process one bit for bit and any difference would come from the runners.
    """
    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(VIDEO))
    for k in range(10):
        cap.set(cv2.CAP_PROP_POS_FRAMES, 70 * k)
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{k:03d}.png"), cv2.resize(frame, (256, 192), interpolation=cv2.INTER_AREA))
    cap.release()
    site = load_site(two_camera_site(tmp_path, "1s", source=folder, cameras=1))
    spec = EngineSpec(precision="fp32", threads=1)

    def run(name: str, make: object) -> dict[int, list[tuple]]:
        outputs: list[FrameOutput] = []
        prepared = prepare_site(site, loop=False)
        config = RunnerConfig(state_dir=tmp_path / name, duration_s=120.0, health_every_s=2.0)
        runner = make(prepared, open_store(tmp_path / f"{name}.sqlite"), config,  # type: ignore[operator]
                      outputs.append)
        runner.counting.open()  # engines loaded and compiled for this size before the first image shows
        runner.counting.count_camera("view001", cv2.imread(str(folder / "000.png")))
        summary = runner.run()
        assert summary.errors == 0 and summary.flushed
        frame_of = {o.ts: o.frame_index for o in outputs}
        with sqlite3.connect(tmp_path / f"{name}.sqlite") as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute("SELECT * FROM zone_readings ORDER BY zone_id")]
        readings: dict[int, list[tuple]] = {}
        for row in rows:
            readings.setdefault(frame_of[row.pop("ts")], []).append(tuple(sorted(row.items())))
        return readings

    local = run("local", lambda prepared, store, config, on_frame: local_runner(
        prepared, store, CameraCounters(prepared.plan, spec), config, on_frame=on_frame))
    remote = run("ray", lambda prepared, store, config, on_frame: ray_runner(
        prepared, store, RayCounting(prepared, spec, RayConfig(replicas=1, encoding="png", loop=False)),
        config, on_frame=on_frame))

    common = sorted(set(local) & set(remote))
    assert len(common) >= 6, (sorted(local), sorted(remote))  # every frame, but for drops under heavy load
    for index in common:
        assert len(local[index]) == len(remote[index]) >= 2
        for mine, theirs in zip(local[index], remote[index], strict=True):
            for (key, a), (key_b, b) in zip(mine, theirs, strict=True):
                assert key == key_b
                if isinstance(a, float):
                    assert b == pytest.approx(a, rel=1e-6, abs=1e-6), (index, key)
                else:
                    assert a == b, (index, key)


def test_cli_runs_a_site_on_the_cluster_and_refuses_a_bad_address(tmp_path: Path, local_ray):
    site = two_camera_site(tmp_path, every="2s")
    cli = CliRunner()
    bad = cli.invoke(app, ["run", str(site), "--cluster", "nowhere", "--no-serve",
                           "--state-dir", str(tmp_path / "s")])
    assert bad.exit_code == 2
    lines = [ln for ln in bad.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--cluster" in lines[0] and "Traceback" not in bad.output
    result = cli.invoke(app, ["run", str(site), "--cluster", "auto", "--duration", "5", "--quiet",
                              "--no-serve", "--precision", precision(),
                              "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    assert "frames counted" in result.output and "cluster: Ray at auto: 1 node(s), 2 CPUs" in result.output
    assert ray.is_initialized()  # a cluster the command did not start is left running
    with sqlite3.connect(tmp_path / "state" / "crowdsafe.sqlite") as conn:
        zones = {r[0] for r in conn.execute("SELECT DISTINCT zone_id FROM zone_readings")}
        cameras = {r[0] for r in conn.execute("SELECT DISTINCT camera_id FROM camera_health")}
    assert zones and zones <= {"walkway", "lawn", "forecourt"}
    assert cameras == {"view001", "view002"}


def test_cameras_move_to_another_node_when_their_node_is_lost(tmp_path: Path):
    """A real multi-node Ray on this machine (``ray.cluster_utils.Cluster``: one raylet per node).

    Readers need the custom resource ``edge`` (nodes beside the cameras), replicas ``model``
    (the head). The edge node holding both readers is killed; a second edge node is up, and the
    readers must restart there and readings resume, each frame stored once.
    """
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"model": 4}, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    try:
        edge_a = cluster.add_node(num_cpus=1, resources={"edge": 10})
        ray.init(address=cluster.address, logging_level="WARNING")
        # One replica with dynamic batching (the GPU path's batcher, here on CPU): the two cameras
        # sample the same instants, so their frames share engine calls.
        run = Run(tmp_path, duration_s=90.0, replicas=1, replica_resources={"model": 1},
                  reader_resources={"edge": 1}, cpu_max_batch=4, max_wait_s=0.1)
        assert run.wait(lambda: all(run.runner.summary.frames.get(c, 0) >= 2 for c in ("view001", "view002")),
                        60), "no frames from the edge node"
        nodes = {cid: ray.get(r.handle.info.remote()).node_id for cid, r in run.counting.remote.items()}
        assert set(nodes.values()) == {edge_a.node_id}
        edge_b = cluster.add_node(num_cpus=1, resources={"edge": 10})
        lost_at = time.time()
        cluster.remove_node(edge_a, allow_graceful=False)
        for cid in ("view001", "view002"):
            assert run.wait(lambda cid=cid: sum(1 for o in list(run.outputs)
                                                if o.camera_id == cid and o.ts > lost_at + 1) >= 2, 60), \
                f"camera {cid} did not resume on the surviving edge node"
        moved = {cid: ray.get(r.handle.info.remote()) for cid, r in run.counting.remote.items()}
        assert {m.node_id for m in moved.values()} == {edge_b.node_id}
        assert all(m.restarted for m in moved.values())
        run.runner.request_stop("test done")
        summary = run.finish()
        assert summary.ray.reader_failures >= 2
        assert_stored_exactly_once(run, summary)
        sizes = summary.ray.batch_sizes
        assert sum(k * v for k, v in sizes.items()) >= summary.frames_total  # every frame went through it
        assert max(sizes) >= 2, sizes  # frames of both cameras were counted in one call
    finally:
        ray.shutdown()
        cluster.shutdown()
