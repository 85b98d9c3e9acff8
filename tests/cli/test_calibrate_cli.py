"""``crowdsafe site check|schema`` and ``crowdsafe calibrate`` end to end on the demo site."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app

DEMO_SITE = Path(__file__).resolve().parents[2] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
runner = CliRunner()


def test_site_check_summarises_the_demo_site():
    result = runner.invoke(app, ["site", "check", str(DEMO_SITE)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "1 camera(s), 3 zone(s), 1 line(s) - OK" in out
    assert "fit 9/9 inliers" in out and "reprojection RMS 0.04" in out
    assert "zone lawn (Front lawn): standing" in out and "LoS profile fruin_queue" in out
    assert "line east_gate: 13.5 m long" in out


def test_site_check_reports_the_field_and_exits_2(tmp_path):
    data = yaml.safe_load(DEMO_SITE.read_text())
    data["zones"][0]["polygon"] = [[0, 0], [4, 4], [4, 0], [0, 4]]
    data["cameras"][0]["source"] = str(DEMO_SITE.parent / "vtest.avi")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["site", "check", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml: zones[0].polygon: polygon is self-intersecting" in result.output
    assert "Traceback" not in result.output


def test_site_check_reads_the_frame_size_from_the_source_when_not_given(tmp_path):
    data = yaml.safe_load(DEMO_SITE.read_text())
    del data["cameras"][0]["calibration"]["image_size"]
    data["cameras"][0]["source"] = str(DEMO_SITE.parent / "vtest.avi")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["site", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "camera view001: 768x576" in result.output


def test_site_schema_to_stdout_and_file(tmp_path):
    result = runner.invoke(app, ["site", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert "cameras" in schema["properties"]
    out = tmp_path / "site.schema.json"
    result = runner.invoke(app, ["site", "schema", "--out", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text()) == schema


def test_calibrate_prints_the_fit_and_writes_the_check_image(tmp_path):
    out = tmp_path / "check.png"
    result = runner.invoke(app, ["calibrate", str(DEMO_SITE), "--camera", "view001", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "9 point pairs, 9 inliers" in result.output
    assert "reprojection error on the ground: RMS 0.04" in result.output
    assert "ground per pixel:" in result.output and "1.7 m person is" in result.output
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (576, 768, 3)
    frame = cv2.VideoCapture(str(DEMO_SITE.parent / "vtest.avi")).read()[1]
    changed = np.any(image != frame, axis=2).mean()
    assert changed > 0.2, "grid, zones and lines are drawn over the frame"


def test_calibrate_on_a_given_image_and_without_out_writes_nothing(tmp_path, monkeypatch):
    frame = cv2.VideoCapture(str(DEMO_SITE.parent / "vtest.avi")).read()[1]
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), frame)
    out = tmp_path / "from_image.png"
    result = runner.invoke(app, ["calibrate", str(DEMO_SITE), "--frame", str(still), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)).shape == (576, 768, 3)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    result = runner.invoke(app, ["calibrate", str(DEMO_SITE)])
    assert result.exit_code == 0 and "pass --out" in result.output
    assert set(tmp_path.iterdir()) == before, "no frame is stored unless asked for"


def test_calibrate_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["calibrate", str(DEMO_SITE), "--camera", "nope"])
    assert result.exit_code == 2 and "no camera 'nope'" in result.output
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((240, 320, 3), np.uint8))
    result = runner.invoke(app, ["calibrate", str(DEMO_SITE), "--frame", str(small), "--out",
                                 str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "cameras[0].calibration.image_size: [768, 576] but the frame is 320x240" in result.output


def _no_focal_site(tmp_path: Path, **camera_extra: object) -> Path:
    """The demo site with a straight-down-like camera whose focal length cannot be estimated:
    an affine calibration (a square of floor seen as a square) has no perspective to measure."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    cal = data["cameras"][0]["calibration"]
    cal.pop("focal_px")
    cal.pop("principal_point")
    cal["image_points"] = [[100, 100], [600, 100], [600, 500], [100, 500], [350, 300]]
    cal["ground_points"] = [[0, 10], [10, 10], [10, 2], [0, 2], [5, 6]]
    data["cameras"][0]["source"] = str(DEMO_SITE.parent / "vtest.avi")
    data["cameras"][0].update(camera_extra)
    data["zones"] = [{"id": "square", "polygon": [[1, 3], [9, 3], [9, 9], [1, 9]]}]
    data["lines"] = []
    path = tmp_path / "nofocal.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_pose_is_refused_by_site_check_and_calibrate_unless_floor_mapping_is_accepted(tmp_path):
    path = _no_focal_site(tmp_path)
    for command in (["site", "check", str(path)], ["calibrate", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "cameras[0].calibration: camera pose unknown" in result.output and "focal_px" in result.output
    accepted = _no_focal_site(tmp_path, accept_floor_mapping=True)
    check = runner.invoke(app, ["site", "check", str(accepted)])
    assert check.exit_code == 0 and "WARNING: pose unknown, density mapped at the FLOOR" in check.output
    cal = runner.invoke(app, ["calibrate", str(accepted)])
    assert cal.exit_code == 0 and "camera pose unknown" in cal.output


def test_calibrate_draws_zones_and_lines_at_head_height_dashed(tmp_path):
    """The gate line drawn on the floor and again, dashed, 1.6 m up: both sets of red pixels exist,
    and the dashed one lies where the line's head-height image is."""
    from crowdsafe.cli.calibrate import draw_overlay
    from crowdsafe.config.site import load_site
    from crowdsafe.geometry.homography import apply
    from crowdsafe.geometry.site import build_site_geometry

    geo = build_site_geometry(load_site(DEMO_SITE))
    frame = np.zeros((576, 768, 3), np.uint8)
    image = draw_overlay(frame, geo, "view001")
    red = (image[:, :, 2] > 200) & (image[:, :, 1] < 60) & (image[:, :, 0] < 60)
    line = geo.site.lines[0]
    gm, fit = geo.cameras["view001"].ground_map, geo.cameras["view001"].fit
    ground = np.linspace(line.a, line.b, 50)[5:-5]
    for matrix in (np.linalg.inv(fit.matrix), gm.ground_to_image):  # floor, then head height
        px = np.round(apply(matrix, ground)).astype(int)
        px = px[(px[:, 0] >= 2) & (px[:, 0] < 766) & (px[:, 1] >= 2) & (px[:, 1] < 574)]
        near = [red[y - 2:y + 3, x - 2:x + 3].any() for x, y in px]
        assert np.mean(near) > 0.4, matrix  # dashes cover about half of the head-height line


def test_calibrate_draws_the_gate_passage_beyond_the_line_ends(tmp_path):
    """The passage, where the gate's crossings are counted, runs on past a and b on the floor."""
    from crowdsafe.cli.calibrate import draw_overlay
    from crowdsafe.config.site import load_site
    from crowdsafe.geometry.homography import apply
    from crowdsafe.geometry.lines import passage_of
    from crowdsafe.geometry.site import build_site_geometry

    geo = build_site_geometry(load_site(DEMO_SITE))
    frame = np.zeros((576, 768, 3), np.uint8)
    red = lambda img: (img[:, :, 2] > 200) & (img[:, :, 1] < 60) & (img[:, :, 0] < 60)  # noqa: E731
    image = red(draw_overlay(frame, geo, "view001"))
    line = geo.site.lines[0]
    pa, _ = passage_of(geo, line, "view001")
    beyond = np.linspace(pa, np.asarray(line.a), 8)[1:-2]  # between the passage's end and a
    px = np.round(apply(np.linalg.inv(geo.cameras["view001"].fit.matrix), beyond)).astype(int)
    assert len(px) and all(image[y - 1:y + 2, x - 1:x + 2].any() for x, y in px)
