"""The Quick start's main job, end to end on the bundled video."""

from __future__ import annotations

import csv

import cv2
from typer.testing import CliRunner

from crowdsafe.cli.demo import ground_truth
from crowdsafe.cli.main import app


def test_demo_counts_writes_csv_and_heatmaps_and_compares_with_truth(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--every", "40s"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "counts.csv").open()))
    assert [(r["frame"], r["time_s"]) for r in rows] == [("0", "0.0"), ("400", "40.0")]
    assert all(float(r["count"]) > 0 for r in rows)
    images = sorted((out / "heatmaps").iterdir())
    assert [p.name for p in images] == ["vtest_000000.jpg", "vtest_000400.jpg"]
    assert cv2.imread(str(images[0])).shape == (576, 768, 3)
    truth = ground_truth()
    assert (truth[0], truth[400], len(truth)) == (3, 3, 795)
    assert "annotated people; MAE" in result.output


def test_demo_without_heatmaps_writes_no_image(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--every", "70s", "--no-heatmaps"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["counts.csv"]
