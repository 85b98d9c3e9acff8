"""The site compiled once: every stage of a run reads the same plan, and compiling reads no file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityResult
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.region import plan_region
from crowdsafe.counting.tuning import load_tuning
from crowdsafe.geometry.lines import plan_lines
from crowdsafe.geometry.region import needed_cells
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.runtime.core import prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import compile_plan, load_plan
from tests.support.sites import SQUARE, demo_part

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


class Flat:
    def count(self, image: np.ndarray) -> DensityResult:
        h, w = image.shape[:2]
        return DensityResult(np.full((h // 8, w // 8), 1e-3, np.float32), h, w)


def test_the_plan_holds_what_the_stages_used_to_derive_each_for_itself(tmp_path: Path):
    site_file = demo_part(tmp_path, [{"id": "square", "type": "walkway", "polygon": SQUARE}],
                          [{"id": "gate", "a": [-14.8, -9.4], "b": [-10.8, -9.4]}])
    geometry = build_site_geometry(load_site(site_file))
    plan = compile_plan(geometry, {})
    assert plan.lines == plan_lines(geometry) and plan.line_cameras == {"view001"}
    cam = geometry.cameras["view001"]
    expected = plan_region(needed_cells(cam, list(plan.lines.values())), cam.ground_map.image_size)
    assert expected is not None and plan.regions == {"view001": expected}  # the square is a corner
    assert plan.models == {"view001": "sparse"}  # auto resolved from the calibration's person heights
    assert plan.profiles.los_profile("walkway", None).name == "fruin_walkway"
    assert {r.name for r in plan.rules} >= {"egress_time", "capacity_forecast", "camera_stale"}
    assert plan.messages.names == {"square": "square", "gate": "gate"}


def test_the_site_limit_reaches_the_plans_rules(tmp_path: Path):
    site = load_site(demo_part(tmp_path, [{"id": "square", "type": "walkway", "polygon": SQUARE}]))
    site = site.model_copy(update={"safety": site.safety.model_copy(update={"egress_limit_s": 300.0})})
    rules = {r.name: r for r in compile_plan(build_site_geometry(site), {}).rules}
    assert rules["egress_time"].raise_at == 300.0 and rules["egress_time_warning"].raise_at == 225.0


def test_the_plan_cannot_be_changed_in_place(tmp_path: Path):
    """A reload swaps a whole new plan in; no stage can edit the one others are reading."""
    plan = compile_plan(build_site_geometry(load_site(DEMO_SITE)), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rules = ()  # type: ignore[misc]
    for mapping in (plan.lines, plan.regions, plan.tunings, plan.models):
        with pytest.raises(TypeError):
            mapping["x"] = None  # type: ignore[index]


def test_compiling_reads_no_file_loading_reads_the_tunings(tmp_path: Path, caplog):
    """The demo site names view001_tuning.json: ``load_plan`` reads it, ``compile_plan`` takes the
    tunings it is given, so a site whose tuning file went missing compiles without looking."""
    geometry = build_site_geometry(load_site(DEMO_SITE))
    loaded = load_plan(geometry)
    shipped = load_tuning(DEMO_SITE.parent / "view001_tuning.json")
    assert loaded.tunings["view001"].gain == shipped.gain and loaded.models["view001"] == shipped.model
    text = DEMO_SITE.read_text().replace("tuning: view001_tuning.json", f"tuning: {tmp_path / 'gone.json'}")
    moved = tmp_path / "site.yaml"
    moved.write_text(text.replace("source: vtest.avi", f"source: {DEMO_SITE.parent / 'vtest.avi'}"))
    geometry = build_site_geometry(load_site(moved))
    with caplog.at_level(logging.WARNING):
        assert compile_plan(geometry, {}).tunings == {}
    assert "not found" not in caplog.text
    with caplog.at_level(logging.WARNING):
        assert load_plan(geometry).tunings == {}
    assert "gone.json not found" in caplog.text


def test_a_run_compiles_once_and_every_stage_reads_that_plan(tmp_path: Path):
    site_file = demo_part(tmp_path, [{"id": "square", "type": "walkway", "polygon": SQUARE}],
                          [{"id": "gate", "a": [-14.8, -9.4], "b": [-10.8, -9.4]}])
    prepared = prepare_site(load_site(site_file))
    plan = prepared.plan
    assert prepared.site is plan.site and prepared.geometry is plan.geometry
    counters = CameraCounters(plan, EngineSpec("auto", "fp32"), factory=lambda spec: Flat())
    pipeline = FramePipeline(plan, counters)
    assert counters.plan is plan and pipeline.plan is plan
    assert counters.regions == dict(plan.regions) and pipeline.lines is plan.lines
    assert pipeline.book is plan.profiles and pipeline.tunings is plan.tunings
