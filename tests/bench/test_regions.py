"""``crowdsafe bench --regions``: per camera the region's share of the frame and frames/s both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.bench.regions import region_bench
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec
from tests.support.sites import SQUARE, demo_part

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
KEYS = {"camera", "width", "height", "crop", "region_share", "fps_full", "fps_region", "saving_pct"}


def test_a_partial_zone_is_timed_both_ways_and_saves(tmp_path, fast_counter: DensityCounter):
    site = demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}])
    [row] = region_bench(site, EngineSpec(), repeats=2, factory=lambda spec: fast_counter)
    assert row.camera == "view001" and (row.width, row.height) == (768, 576)
    x0, y0, x1, y1 = row.crop
    assert row.region_share == pytest.approx((x1 - x0) * (y1 - y0) / (768 * 576))
    assert row.region_share < 0.5
    assert row.fps_region > row.fps_full > 0
    assert row.saving_pct == pytest.approx(100 * (1 - row.fps_full / row.fps_region))


def test_a_camera_without_a_calibrated_size_is_timed_at_its_frames_size(tmp_path,
                                                                       fast_counter: DensityCounter):
    site = demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}])
    data = yaml.safe_load(site.read_text())
    del data["cameras"][0]["calibration"]["image_size"]
    site.write_text(yaml.safe_dump(data))
    [row] = region_bench(site, EngineSpec(), repeats=1, factory=lambda spec: fast_counter)
    assert (row.width, row.height) == (768, 576) and row.crop is not None


def test_the_demo_site_reports_no_saving(fast_counter: DensityCounter):
    """Its zones cover nearly the whole view: the whole frame is inferred and nothing is saved."""
    [row] = region_bench(DEMO_SITE, EngineSpec(), repeats=1, factory=lambda spec: fast_counter)
    assert row.crop is None and row.region_share == 1.0 and row.saving_pct == 0.0


def test_cli_adds_the_regions_to_the_report(tmp_path, fast_counter: DensityCounter):
    from crowdsafe.cli.main import app

    site = demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}])
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--quick", "--json", str(out), "--size", "64x64", "-m", "sparse", "-e", "onnxruntime",
        "-p", "int8", "--drift-data", str(tmp_path / "none"), "--regions", "--site", str(site)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["rows"] and report["peak_gflops"] > 0  # the usual report is still there
    regions = report["regions"]
    assert regions["site"] == str(site) and "--regions" in regions["command"]
    assert (regions["engine"], regions["precision"]) == ("onnxruntime", "int8")
    [camera] = regions["cameras"]
    assert set(camera) == KEYS and camera["region_share"] < 0.5
    assert "region-only inference" in result.output
