"""Background-aware counting: static texture is removed, a standing crowd never is.

The required test loops a dense crowd image (a ShanghaiTech Part A *train* image) as a live
camera through the real pipeline for an hour of simulated time: whatever the background learner
sees, the count must stay within 5 % of what the counter finds in the image, the whole hour.
"""

from __future__ import annotations

import json
from importlib import resources

import cv2
import numpy as np
import pytest

from crowdsafe.config.site import parse_site
from crowdsafe.counting.counter import DensityResult, EveryCamera
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.background import near_empty, subtract_background, window_people
from crowdsafe.runtime.background import BackgroundPolicy, DensityBackground
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from tests.support.counting import MemoCounter, blob, texture
from tests.support.geometry import CAM_A, SHARED_DATA, SIZE
from tests.support.sites import camera, site

PART_A_TRAIN = SHARED_DATA / "crowd-train" / "shanghaitech_a_train"
VIDEO = str(resources.files("crowdsafe") / "data" / "vtest.avi")
HEADS = SHARED_DATA / "video" / "vtest_heads.json"








def test_subtraction_never_takes_more_than_the_background():
    floor = texture()
    person = blob(floor.shape, (30, 40), 1.0)
    frame = floor + person
    out = subtract_background(frame, floor)
    assert np.all(out >= 0)
    assert np.all(frame - out <= floor + 1e-7)  # no cell loses more than the background there
    assert out.sum() == pytest.approx(1.0, abs=0.02)
    crowd = frame + 50 * blob(floor.shape, (20, 20), 1.0, sigma=4)
    assert subtract_background(crowd, floor).sum() == pytest.approx(crowd.sum() - floor.sum(), rel=0.01)


def test_learns_texture_from_near_empty_frames_only():
    policy = BackgroundPolicy(min_spacing_s=15.0)
    learner = DensityBackground(policy)
    floor = texture()
    assert learner.current is None and "no trusted background" in learner.status()
    rng = np.random.default_rng(0)
    for k in range(20):  # one or two walkers somewhere in every frame
        frame = floor.copy()
        for _ in range(rng.integers(1, 3)):
            frame += blob(floor.shape, (int(rng.integers(5, 55)), int(rng.integers(5, 75))), 1.0)
        learner.add(frame, ts=25.0 * k)  # beyond the jittered spacing (15-22.5 s): every frame is taken
    assert learner.current is not None
    assert np.abs(learner.current - floor).sum() < 0.15 * floor.sum()  # walkers are gone
    assert "learned" in learner.status()

    # frames close together are not all taken: a walker is in one or two ring frames at most
    assert not learner.add(floor, ts=25.0 * 19 + 1.0)


def test_a_crowd_is_never_learned_and_capture_wins():
    policy = BackgroundPolicy(min_spacing_s=0.0)
    learner = DensityBackground(policy)
    crowd = texture() + 60 * blob((60, 80), (30, 40), 1.0, sigma=6)
    assert not near_empty(crowd, policy.frame_max_window_people)
    for k in range(50):
        assert not learner.add(crowd, ts=float(k))
    assert learner.current is None
    assert "held a crowd" in learner.status()
    assert np.array_equal(learner.apply(crowd), crowd)
    floor = texture()
    learner.capture(floor)
    assert learner.current is floor or np.array_equal(learner.current, floor)
    assert "captured" in learner.status()


def test_window_people_finds_the_densest_block():
    d = np.zeros((40, 40), np.float32)
    d[10:14, 10:14] = 0.25  # 4 people in a 4x4 block
    assert window_people(d, 16) == pytest.approx(4.0, abs=1e-4)
    assert window_people(d, 2) == pytest.approx(1.0, abs=1e-4)


def dense_train_image() -> tuple[str, np.ndarray, int]:
    labels = json.loads((PART_A_TRAIN / "labels.json").read_text())
    name = next(n for n in sorted(labels) if 300 <= labels[n]["count"] <= 900)
    image = cv2.imread(str(PART_A_TRAIN / name))
    return name, cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA), labels[name]["count"]


@pytest.mark.skipif(not PART_A_TRAIN.is_dir(), reason=f"ShanghaiTech Part A train images not found at "
                                                       f"{PART_A_TRAIN} (shared data)")
def test_static_crowd_stays_counted_for_an_hour(counter):
    """A Part A train image looped as a live camera, 1 frame every 2 s for an hour of fake clock."""
    name, image, _ = dense_train_image()
    geometry = build_site_geometry(parse_site(site(camera("stage", CAM_A))))
    memo = MemoCounter(counter)
    pipeline = FramePipeline(geometry, EveryCamera(memo), tunings={})
    reference = memo.count(image).count
    assert reference > 100, f"{name}: the counter finds only {reference:.0f} people"
    counts = []
    for ts in np.arange(0.0, 3600.0 + 1e-9, 2.0):
        counts.append(pipeline.process(Sample("stage", ts=float(ts), image=image)).count)
    counts_arr = np.asarray(counts)
    worst = float(np.max(np.abs(counts_arr - reference)) / reference)
    assert worst <= 0.05, f"{name}: the count strayed {100 * worst:.1f} % from {reference:.0f} in the hour"
    assert "no trusted background" in pipeline.background_status("stage")
    assert not pipeline.capture_background("stage")[0]  # nor can an operator capture a crowd as "empty"
    assert len(memo.cache) <= 3  # the frame, and the background check's median of identical frames


@pytest.mark.skipif(not HEADS.is_file(), reason=f"PETS annotated head points not found at {HEADS}")
def test_learned_background_removes_the_texture_floor_on_the_sample_video(counter):
    """Real frames of the sample video, 30 s of fake clock apart: once trusted, the background
    takes the static texture away and the count moves towards the annotated people."""
    heads = json.loads(HEADS.read_text())
    policy = BackgroundPolicy(min_spacing_s=15.0, min_frames=5, ring=5)
    learner = DensityBackground(policy)
    cap = cv2.VideoCapture(VIDEO)
    learn = list(range(0, 795, 160))[:5]
    held_out = [330, 650]
    maps = {}
    index = -1
    while index < max(learn + held_out):
        ok, frame = cap.read()
        index += 1
        assert ok
        if index in learn or index in held_out:
            maps[index] = counter.count(frame).density
    cap.release()
    for k, f in enumerate(learn):
        learner.add(maps[f], ts=30.0 * k)
    assert learner.current is not None, learner.status()
    for f in held_out:
        truth = len(heads[str(f)]["points"])
        raw = float(maps[f].sum())
        after = float(learner.apply(maps[f]).sum())
        assert abs(after - truth) < abs(raw - truth), (f, raw, after, truth)


class FixedCounter:
    """A counter whose density and interval are given, to follow them through the pipeline."""

    def __init__(self, density: np.ndarray, interval: tuple[float, float] | None) -> None:
        self.density, self.interval = density, interval

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        h, w = image_bgr.shape[:2]
        return DensityResult(self.density, h, w, interval=self.interval)


def test_zone_readings_carry_the_count_interval():
    geometry = build_site_geometry(parse_site(site(camera("cam", CAM_A))))
    density = texture() + 20 * blob((60, 80), (40, 40), 1.0, sigma=3)
    total = float(density.sum())
    counter = FixedCounter(density, (0.8 * total, 1.3 * total))
    pipeline = FramePipeline(geometry, EveryCamera(counter), tunings={})
    out = pipeline.process(Sample("cam", ts=0.0, image=np.zeros((SIZE[1], SIZE[0], 3), np.uint8)))
    assert out.interval == pytest.approx((0.8 * total, 1.3 * total))
    rows = [r.as_row() for r in out.zones]
    assert any(r["count"] > 1 for r in rows)
    for r in rows:
        assert r["count_low"] is not None and r["count_high"] is not None
        assert r["count_low"] <= r["count"] + 1e-9 <= r["count_high"] + 2e-9


def test_operator_captures_the_background_through_the_api(tmp_path):
    """The operator's button and ``crowdsafe background capture``: the running pipeline's latest
    density becomes the background. Refused while anyone is in view (a crowd, one person, or
    motion the counter missed), never for viewers; undone on request; all in the audit trail."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from crowdsafe.api.app import create_app
    from crowdsafe.api.server import serve_in_thread
    from crowdsafe.api.settings import ApiSettings
    from crowdsafe.cli.main import app as cli
    from crowdsafe.store import open_store
    from tests.support.api_support import make_tokens

    geometry = build_site_geometry(parse_site(site(camera("cam", CAM_A))))
    floor = texture()
    counter = FixedCounter(floor + 70 * blob((60, 80), (30, 40), 1.0, sigma=5), None)
    pipeline = FramePipeline(geometry, EveryCamera(counter), tunings={})
    frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    clock = iter(range(1000))

    def frames(n: int, image: np.ndarray = frame) -> None:
        for _ in range(n):
            pipeline.process(Sample("cam", ts=float(next(clock)), image=image))

    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(site(camera("cam", CAM_A))))
    state = tmp_path / "state"
    state.mkdir()
    store = open_store(state / "crowdsafe.sqlite")
    tokens = make_tokens(state)
    settings = dict(site_file=site_file, state_dir=state, capture_background=pipeline.capture_background,
                    undo_background=pipeline.undo_capture)
    app = create_app(ApiSettings(**settings))  # type: ignore[arg-type]
    url = "/api/cameras/cam/background/capture"
    with TestClient(app) as c:
        op = {"Authorization": "Bearer " + tokens["operator"]}
        r = c.post(url, headers=op)
        assert r.status_code == 409 and "not been counted" in r.json()["detail"]
        frames(3)
        r = c.post(url, headers=op)
        assert r.status_code == 409 and "person in view" in r.json()["detail"]  # a crowd
        counter.density = floor + blob((60, 80), (30, 40), 1.0)  # one person on the empty scene
        frames(3)
        r = c.post(url, headers=op)
        assert r.status_code == 409 and "person in view" in r.json()["detail"]
        counter.density = floor
        moving = frame.copy()
        for k in range(3):  # nobody by the counter, but something walks through the view
            moving[:] = 0
            moving[100:160, 40 + 60 * k:60 + 60 * k] = 200
            frames(1, moving.copy())
        r = c.post(url, headers=op)
        assert r.status_code == 409 and "moves in view" in r.json()["detail"]
        frames(4)  # the first still frame still differs from the last moving one
        assert c.post(url, headers={"Authorization": "Bearer " + tokens["viewer"]}).status_code == 403
        r = c.post(url, headers=op)
        assert r.status_code == 200 and "captured" in r.json()["status"], r.json()
        assert c.post("/api/cameras/nope/background/capture", headers=op).status_code == 404
        undo = "/api/cameras/cam/background/undo"
        assert c.post(undo, headers={"Authorization": "Bearer " + tokens["viewer"]}).status_code == 403
        r = c.post(undo, headers=op)
        assert r.status_code == 200 and "no trusted background" in r.json()["status"]
        assert pipeline._densities["cam"].captured is None  # back to what it was before the capture
        r = c.post(undo, headers=op)
        assert r.status_code == 409 and "no capture to undo" in r.json()["detail"]
        assert c.post(url, headers=op).status_code == 200  # captured again, for what follows
    trail = store.audit_trail()
    assert [(a["action"], a["outcome"]) for a in trail] == [("background_capture", "refused")] * 4 + [
        ("background_capture", "done"), ("background_undo", "done"), ("background_undo", "refused"),
        ("background_capture", "done")]
    assert all(a["actor"] == "operator-1" and a["subject"] == "cam" and a["detail"] for a in trail)
    frames(1, frame)
    counter.density = floor + blob((60, 80), (30, 40), 1.0)  # one person on the empty scene
    one = pipeline.process(Sample("cam", ts=float(next(clock)), image=frame))
    assert one.count == pytest.approx(1.0, abs=0.05)

    # The command, against the same API served over HTTP on 127.0.0.1.
    server = serve_in_thread(ApiSettings(**settings, host="127.0.0.1", port=0))  # type: ignore[arg-type]
    try:
        def command(*args: str) -> object:
            return CliRunner().invoke(cli, ["background", "capture", "--url", f"http://127.0.0.1:{server.port}",
                                            *args])
        counter.density = floor + 70 * blob((60, 80), (30, 40), 1.0, sigma=5)
        frames(1)
        refused = command("--camera", "cam", "--token", tokens["operator"])
        assert refused.exit_code == 2 and "person in view" in refused.output and "HTTP 409" in refused.output
        viewer = command("--camera", "cam", "--token", tokens["viewer"])
        assert viewer.exit_code == 2 and "HTTP 403" in viewer.output
        counter.density = floor
        frames(3)
        done = command("--camera", "cam", "--token", tokens["operator"])
        assert done.exit_code == 0 and "camera cam: " in done.output and "captured" in done.output
        undone = CliRunner().invoke(cli, ["background", "undo", "--url", f"http://127.0.0.1:{server.port}",
                                          "--camera", "cam", "--token", tokens["operator"]])
        assert undone.exit_code == 0 and "capture undone" in undone.output
    finally:
        server.stop()
    gone = CliRunner().invoke(cli, ["background", "capture", "--camera", "cam", "--token", "x",
                                    "--url", f"http://127.0.0.1:{server.port}"])
    assert gone.exit_code == 2 and "no crowdsafe API at" in gone.output and "Traceback" not in gone.output
    store.close()
    no_runner = create_app(ApiSettings(site_file=site_file, state_dir=state))
    with TestClient(no_runner) as c:
        assert c.post(url, headers={"Authorization": "Bearer " + tokens["operator"]}).status_code == 503
