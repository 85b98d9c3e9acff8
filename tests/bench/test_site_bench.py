"""``crowdsafe bench --site``: the site's whole pipeline against its engine alone, in one run."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.bench.site import STAGES, BenchError, EngineFedVideo, site_bench
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.runtime.camera import CameraReader, CameraSource, Sample
from crowdsafe.runtime.slots import LatestSlots

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
VIDEO = DEMO_SITE.parent / "vtest.avi"


def test_an_engine_fed_camera_never_drops_a_sample_and_keeps_video_time():
    """The reader waits for each sample to be taken: every one reaches the engine, one sampling
    interval of video time apart, each with its pair one frame later."""
    slots: LatestSlots[Sample] = LatestSlots()
    video = EngineFedVideo(VIDEO, 1.0, "cam")
    video.wait_taken = functools.partial(slots.wait_taken, "cam")
    reader = CameraReader(CameraSource("cam", video, 1.0, pairs=True, size=video.size, nominal_fps=video.fps),
                          slots)
    reader.start()
    taken = []
    try:
        while len(taken) < 6:
            item = slots.take(timeout=10)
            assert item is not None, "the reader stopped offering samples"
            taken.append(item[1])
    finally:
        reader.stop()
        reader.join(5)
    assert slots.stats["cam"].dropped == 0
    assert [s.frame_index for s in taken] == [0, 10, 20, 30, 40, 50]  # 10 fps, one sample per second
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(taken)]
    assert gaps == pytest.approx([1.0] * 5)
    assert all(s.pair is not None and s.pair_dt == pytest.approx(0.1) for s in taken)
    assert all(s.decode_s > 0 for s in taken)


def test_the_demo_site_reports_every_stage_and_both_rates(fast_counter: DensityCounter):
    result = site_bench(DEMO_SITE, EngineSpec(), duration_s=8.0, factory=lambda spec: fast_counter)
    [cam] = result.cameras
    assert cam.camera == "view001" and cam.frames >= 1 and cam.engine_frames >= 4
    assert cam.dropped == 0
    assert cam.delivered_fps == pytest.approx(cam.frames / result.pipeline_s)
    assert cam.engine_fps > 0 and cam.ratio == pytest.approx(cam.delivered_fps / cam.engine_fps)
    assert set(cam.stages) == set(STAGES)
    # the engine is the stage that costs most, and the demo's gate makes flow cost something
    assert cam.stages["count"] == max(cam.stages.values())
    assert cam.stages["flow"] > 0 and cam.stages["decode"] > 0
    # the pipeline's CPU per frame holds the engine's and the stages' beside it
    assert result.pipeline_cpu_s_per_frame > 0 and result.engine_cpu_s_per_frame > 0


def test_a_camera_that_is_not_a_video_file_is_refused(tmp_path: Path, fast_counter: DensityCounter):
    data = yaml.safe_load(DEMO_SITE.read_text())
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((576, 768, 3), np.uint8))
    data["cameras"][0]["source"] = str(folder)
    data["cameras"][0].pop("tuning", None)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    with pytest.raises(BenchError, match="needs a video file"):
        site_bench(site, EngineSpec(), duration_s=4.0, factory=lambda spec: fast_counter)


def test_cli_writes_the_site_block(tmp_path: Path, fast_counter: DensityCounter):
    from crowdsafe.cli.main import app

    out = tmp_path / "b.json"
    args = ["bench", "--site", str(DEMO_SITE), "--duration", "6", "--json", str(out)]
    result = CliRunner().invoke(app, args, obj={"make_counter": lambda spec: fast_counter})
    assert result.exit_code == 0, result.output
    assert "precision int8" in result.output or "precision bf16" in result.output or \
        "precision fp32" in result.output
    data = json.loads(out.read_text())
    [cam] = data["site"]["cameras"]
    assert {"camera", "delivered_fps", "engine_fps", "stages"} <= set(cam)
    assert set(cam["stages"]) == set(STAGES)
    assert data["machine"]["cores"] >= 1 and "--site" in data["command"]


def test_two_cameras_are_compared_with_the_engine_serving_both_in_turn(tmp_path: Path,
                                                                       fast_counter: DensityCounter):
    data = yaml.safe_load(DEMO_SITE.read_text())
    first = data["cameras"][0]
    first.pop("tuning", None)
    first["source"] = str(VIDEO)
    data["cameras"].append({**first, "id": "view002"})
    site = tmp_path / "two.yaml"
    site.write_text(yaml.safe_dump(data))
    result = site_bench(site, EngineSpec(), duration_s=8.0, factory=lambda spec: fast_counter)
    cams = {c.camera: c for c in result.cameras}
    assert set(cams) == {"view001", "view002"}
    in_turn = 1.0 / sum(1.0 / c.engine_alone_fps for c in cams.values())
    for cam in cams.values():
        assert cam.frames >= 1 and cam.dropped == 0
        assert cam.engine_fps == pytest.approx(in_turn) and cam.engine_fps < cam.engine_alone_fps
    # round robin: each camera gets about every other frame of the engine (a camera whose reader has
    # no sample ready on a loaded machine waits a turn, so a frame or two apart; never one starved)
    most = max(c.frames for c in cams.values())
    assert abs(cams["view001"].frames - cams["view002"].frames) <= max(2, 0.1 * most)
