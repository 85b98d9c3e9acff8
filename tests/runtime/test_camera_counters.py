"""Each camera is counted by the model its ``model`` setting and calibration call for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityResult
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.region import RegionCounter
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.runtime.counters import CameraCounters, precision_for
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import resolve_model
from tests.support.sites import SQUARE, demo_part

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


class Recording:
    """A counter that remembers the spec it was built with and returns a flat density."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.calls = 0

    def count(self, image: np.ndarray) -> DensityResult:
        self.calls += 1
        h, w = image.shape[:2]
        density = np.full((h // 8, w // 8), 1e-3, np.float32)
        return DensityResult(density=density, image_height=h, image_width=w)


def _site(tmp_path: Path, model: str) -> Path:
    text = DEMO_SITE.read_text().replace("model: auto", f"model: {model}")
    path = tmp_path / "site.yaml"
    path.write_text(text.replace("source: vtest.avi", f"source: {DEMO_SITE.parent / 'vtest.avi'}"))
    return path


def _counters(path: Path, precision: str = "fp32") -> tuple[CameraCounters, list[Recording]]:
    built: list[Recording] = []

    def factory(spec: EngineSpec) -> Recording:
        built.append(Recording(spec))
        return built[-1]

    geometry = build_site_geometry(load_site(path))
    return CameraCounters(geometry, EngineSpec("auto", precision), factory=factory), built


def test_auto_with_calibration_picks_the_sparse_model_for_the_demo_camera(tmp_path):
    """The PETS camera sees a 1.7 m person 14-138 px tall (median above the 48 px rule)."""
    counters, built = _counters(_site(tmp_path, "auto"))
    assert counters.models == {"view001": "sparse"}
    assert [b.spec.model for b in built] == ["sparse"]
    assert counters.for_camera("view001") is built[0]


@pytest.mark.parametrize("model", ["dense", "sparse"])
def test_an_explicit_model_is_kept(tmp_path, model):
    counters, built = _counters(_site(tmp_path, model))
    assert counters.models == {"view001": model}
    assert [b.spec.model for b in built] == [model]


def test_int8_runs_both_models_in_int8(tmp_path):
    """Each model ships its own int8 table, so an int8 site runs sparse cameras in int8 too."""
    counters, built = _counters(_site(tmp_path, "sparse"), precision="int8")
    assert built[0].spec.precision == "int8" and built[0].spec.model == "sparse"
    assert precision_for("dense", EngineSpec("auto", "int8")).precision == "int8"
    assert precision_for("sparse", EngineSpec("auto", "int8")).precision == "int8"
    assert precision_for("sparse", EngineSpec("auto", "bf16")).precision == "bf16"
    assert "view001 sparse (int8)" in counters.describe()


def test_auto_without_person_heights_decides_per_frame():
    assert resolve_model("auto", np.array([np.nan, np.nan])) == "auto"
    assert resolve_model("auto", None) == "auto"
    assert resolve_model("dense", np.array([200.0])) == "dense"
    assert resolve_model("auto", np.array([200.0, 100.0, 90.0])) == "sparse"
    assert resolve_model("auto", np.array([10.0, 12.0, 30.0])) == "dense"


def test_the_pipeline_counts_each_frame_with_its_cameras_counter(tmp_path):
    from crowdsafe.runtime.camera import Sample

    counters, built = _counters(_site(tmp_path, "sparse"))
    pipeline = FramePipeline(build_site_geometry(load_site(_site(tmp_path, "sparse"))), counters)
    frame = np.zeros((576, 768, 3), np.uint8)
    output = pipeline.process(Sample(camera_id="view001", ts=1.0, image=frame, pair=None))
    assert built[0].calls >= 1
    assert output.count == pytest.approx(1e-3 * 72 * 96, rel=1e-3)



def test_scale_normalise_counts_the_demo_camera_in_bands_on_its_own_grid(tmp_path):
    """People 14-138 px tall: the far rows are enlarged towards the sparse model's 100-250 px."""
    path = _site(tmp_path, "auto")
    path.write_text(path.read_text().replace("    model: auto", "    model: auto\n    scale_normalise: true"))
    counters, built = _counters(path)
    assert counters.scaled == {"view001": True}
    counter = counters.for_camera("view001")
    bands = counter.bands  # type: ignore[attr-defined]
    assert len(bands) >= 3 and bands[0].scale > bands[-1].scale >= 1.0
    result = counter.count(np.zeros((576, 768, 3), np.uint8))
    assert result.density.shape == (72, 96)
    # The flat 1e-3 per cell of every resized band comes back as 1e-3 per original cell's
    # worth of resized pixels: enlarged rows carry scale^2 times the mass.
    assert built[0].calls == len(bands)
    assert result.density[0, 0] == pytest.approx(1e-3 * bands[0].scale ** 2, rel=0.05)


def test_scale_normalise_leaves_a_dense_camera_at_native_scale(tmp_path):
    path = _site(tmp_path, "dense")
    text = path.read_text().replace("    model: dense", "    model: dense\n    scale_normalise: true")
    path.write_text(text)
    counters, built = _counters(path)
    assert counters.scaled == {"view001": False}
    assert counters.for_camera("view001") is built[0]


WALKWAY = [[-6.5, 8.0], [-11.5, 2.5], [-13.5, -10.5], [-14.0, -16.5], [10.0, -10.0], [7.5, -8.0]]


@pytest.mark.parametrize(("camera", "regions", "cropped"), [
    ({}, True, True),  # a zone over part of the frame: only its region is inferred
    ({"full_frame": True}, True, False),  # the camera asks for its whole frame
    ({}, False, False),  # a whole-frame evaluation asks for every camera's whole frame
    ({"model": "sparse", "scale_normalise": True}, True, False),  # bands are rows of the whole frame
])
def test_a_camera_infers_its_region_unless_told_otherwise(tmp_path, camera, regions, cropped):
    geometry = build_site_geometry(load_site(demo_part(tmp_path, [{"id": "square", "polygon": SQUARE}],
                                                       **camera)))
    built: list[Recording] = []
    counters = CameraCounters(geometry, EngineSpec("auto", "fp32"), regions=regions,
                              factory=lambda spec: built.append(Recording(spec)) or built[-1])
    counter = counters.for_camera("view001")
    assert isinstance(counter, RegionCounter) == cropped == ("view001" in counters.regions)
    result = counter.count(np.zeros((576, 768, 3), np.uint8))
    assert result.density.shape == (72, 96)
    if not cropped:
        assert (result.density > 0).mean() > 0.99 or camera.get("scale_normalise")
        return
    core, crop = counters.regions["view001"]
    assert core.pixels < crop.pixels < 0.5 * 768 * 576
    assert f"region {100 * crop.pixels / (768 * 576):.0f} %" in counters.describe()
    zone = geometry.cameras["view001"].zone_weights["square"]
    assert (result.density > 0).sum() == core.pixels // 64  # only the core is kept
    assert float((zone * result.density).sum()) == pytest.approx(1e-3 * float(zone.sum()))


def test_a_zone_reads_the_same_from_its_region_as_from_the_whole_frame(tmp_path, counter, bundled_video):
    """Real engine, real frames of the demo view, its walkway alone (rows 88-351): within 0.5 %."""
    import cv2

    geometry = build_site_geometry(load_site(demo_part(tmp_path, [{"id": "walk", "polygon": WALKWAY}])))
    region, whole = (CameraCounters(geometry, EngineSpec("auto", "fp32"), regions=regions,
                                    factory=lambda spec: counter) for regions in (True, False))
    assert "view001" in region.regions and "view001" not in whole.regions
    zone = geometry.cameras["view001"].zone_weights["walk"]
    capture = cv2.VideoCapture(str(bundled_video))
    for index in (100, 500):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        full = float((zone * whole.count_camera("view001", frame).density).sum())
        cropped = float((zone * region.count_camera("view001", frame).density).sum())
        assert full > 1.0  # people in the zone, or the comparison says nothing
        assert cropped == pytest.approx(full, rel=0.005)
    capture.release()
