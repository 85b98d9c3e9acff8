"""``crowdsafe site check|schema`` and ``crowdsafe calibrate`` end to end on the demo site."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app

DEMO_SITE = Path(__file__).resolve().parents[1] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
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
