"""Per-camera tuning: chosen by cross-validation on its frames only, applied by the runtime and eval-site."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import load_site
from crowdsafe.counting.intervals import coverage
from crowdsafe.counting.tuning import (
    CameraTuning,
    TuningError,
    calibrate_interval,
    fit_tuning,
    load_tuning,
    save_tuning,
    site_tunings,
)
from tests.support.counting import MemoCounter, blob, texture, uses
from tests.support.geometry import DEMO_SITE, SHARED_DATA

HEADS = SHARED_DATA / "video" / "vtest_heads.json"
FEET = SHARED_DATA / "video" / "vtest_points.json"
SHIPPED = DEMO_SITE.parent / "view001_tuning.json"


def scene(n_frames: int, seed: int) -> tuple[dict[str, list[np.ndarray]], list[float]]:
    """Two synthetic 'models' of one camera: a noisy one with a big texture floor, and a good
    one that counts people at 0.5x over a small floor. Truth: 2-9 walkers per frame."""
    rng = np.random.default_rng(seed)
    floor_big, floor_small = 4 * texture(seed=1), 0.3 * texture(seed=2)
    maps: dict[str, list[np.ndarray]] = {"dense": [], "sparse": []}
    truth = []
    for _ in range(n_frames):
        n = int(rng.integers(2, 10))
        people = sum((blob(floor_big.shape, (int(rng.integers(5, 55)), int(rng.integers(5, 75))), 1.0)
                      for _ in range(n)), np.zeros(floor_big.shape, np.float32))
        maps["dense"].append(floor_big + people * rng.uniform(0.3, 1.7))
        maps["sparse"].append(floor_small + 0.5 * people)
        truth.append(float(n))
    return maps, truth


def test_cross_validation_picks_the_better_model_and_a_gain_that_removes_bias():
    maps, truth = scene(60, seed=0)
    tuning = fit_tuning("cam", maps, truth, list(range(60)))
    assert tuning.model == "sparse"
    assert {(c.model, c.background) for c in tuning.candidates} >= {("dense", False), ("sparse", False)}
    best = min(tuning.candidates, key=lambda c: c.cv_mae)
    assert (best.model, best.background) == (tuning.model, tuning.background)
    # new frames of the same camera: unbiased, and the 90 % interval covers most of them
    new_maps, new_truth = scene(200, seed=1)
    pred = [float(tuning.apply(m).sum()) for m in new_maps[tuning.model]]
    assert abs(np.mean(pred) - np.mean(new_truth)) < 0.1 * np.mean(new_truth)
    assert 0.8 <= coverage(tuning.interval, pred, new_truth) <= 1.0


def walkers(n_frames: int, seed: int, response: float,
            unseen_from: int = -1) -> tuple[list[np.ndarray], list[float]]:
    """One model seeing 2-9 walkers at ``response`` per person; from frame ``unseen_from`` on,
    the labels also hold 2 people no camera sees (far away, occluded), as in the sample video's
    frames 147-244."""
    rng = np.random.default_rng(seed)
    maps, truth = [], []
    for i in range(n_frames):
        n = int(rng.integers(2, 10))
        people = sum((blob((60, 80), (int(rng.integers(5, 55)), int(rng.integers(5, 75))), response)
                      for _ in range(n)), np.zeros((60, 80), np.float32))
        maps.append(people)
        truth.append(float(n + (2 if 0 <= unseen_from <= i else 0)))
    return maps, truth


@pytest.mark.parametrize(("response", "unseen_from", "gain_fitted", "gain"), [
    (0.5, -1, True, 2.0),  # the model counts half of everyone: a gain generalises
    (1.0, 24, False, 1.0),  # it counts everyone it can see: a gain would learn the unseen people
])
def test_gain_is_fitted_only_when_it_generalises_across_blocks(response, unseen_from, gain_fitted, gain):
    maps, truth = walkers(40, seed=4, response=response, unseen_from=unseen_from)
    tuning = fit_tuning("cam", {"sparse": maps}, truth, list(range(40)))
    chosen = next(c for c in tuning.candidates if c.gain == tuning.gain)
    assert chosen.gain_fitted is gain_fitted
    assert tuning.gain == pytest.approx(gain, rel=0.05)
    new_maps, new_truth = walkers(100, seed=5, response=response)
    pred = [float(tuning.apply(m).sum()) for m in new_maps]
    assert abs(np.mean(pred) - np.mean(new_truth)) < 0.05 * np.mean(new_truth)


def test_interval_refitted_on_more_frames_keeps_the_choice_and_records_the_frames():
    maps, truth = walkers(40, seed=6, response=1.0, unseen_from=30)
    tuning = fit_tuning("cam", {"sparse": maps}, truth, list(range(40)))
    assert len(tuning.calibration) == 40
    # 160 more frames of the same camera with nobody unseen: the upper tail comes from 10 of 200
    new_maps, new_truth = walkers(160, seed=7, response=1.0)
    pairs = [(float(tuning.apply(m).sum()), t) for m, t in zip(new_maps, new_truth, strict=True)]
    wider = calibrate_interval(tuning, pairs, list(range(40, 200)))
    assert (wider.model, wider.gain, wider.background) == (tuning.model, tuning.gain, tuning.background)
    assert wider.frames == list(range(200)) and len(wider.calibration) == 200
    assert wider.interval.hi[0] < tuning.interval.hi[0]
    predicted, annotated = zip(*wider.calibration, strict=True)
    assert 0.85 <= coverage(wider.interval, list(predicted), list(annotated)) <= 0.95


def test_tuning_round_trip_and_site_file(tmp_path: Path):
    maps, truth = scene(30, seed=3)
    tuning = fit_tuning("view001", maps, truth, list(range(30)))
    save_tuning(tuning, tmp_path / "t.json")
    back = load_tuning(tmp_path / "t.json")
    assert (back.model, back.background, back.gain) == (tuning.model, tuning.background, tuning.gain)
    frame = maps[tuning.model][0]
    assert float(back.apply(frame).sum()) == pytest.approx(float(tuning.apply(frame).sum()), rel=1e-4)
    text = DEMO_SITE.read_text().replace("tuning: view001_tuning.json", "tuning: t.json")
    assert "tuning: t.json" in text
    text = text.replace("source: vtest.avi", f"source: {DEMO_SITE.parent}/vtest.avi")
    (tmp_path / "site.yaml").write_text(text)
    assert site_tunings(load_site(tmp_path / "site.yaml"))["view001"].gain == tuning.gain
    wrong = CameraTuning.from_dict({**tuning.as_dict(), "camera": "other"})
    save_tuning(wrong, tmp_path / "t.json")
    with pytest.raises(TuningError, match="tuned for camera 'other'"):
        site_tunings(load_site(tmp_path / "site.yaml"))
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(TuningError):
        load_tuning(tmp_path / "t.json")


def test_shipped_demo_tuning_used_only_frames_0_to_199():
    tuning = load_tuning(SHIPPED)
    assert tuning.frames and max(tuning.frames) < 200
    # Enabled in the demo site; chosen by the regional error, so people are not scaled away
    # with the texture: the sparse model, a background learned where nobody was, gain near 1.
    tuned = site_tunings(load_site(DEMO_SITE))["view001"]
    assert (tuned.model, tuned.background) == ("sparse", True) and 0.8 <= tuned.gain <= 1.25
    assert tuned.background_density is not None and tuned.background_density.min() >= 0


@pytest.mark.skipif(not HEADS.is_file(), reason=f"PETS annotated head points not found at {HEADS}")
def test_tune_cli_on_the_sample_video(tmp_path: Path, counter):
    """The real command on real frames (one engine stands in for both models to save time)."""
    out = tmp_path / "t.json"
    result = CliRunner().invoke(app, ["tune", str(DEMO_SITE), "--camera", "view001", "--labels", str(HEADS),
                                      "--frames", "0:200", "--max-frames", "6", "--folds", "3",
                                      "--interval-frames", "10", "--out", str(out),
                                      "--keep-frames", str(tmp_path / "kept")],
                             obj=uses(MemoCounter(counter)))
    assert result.exit_code == 0, result.output
    assert "chosen:" in result.output and "expected error" in result.output
    assert "fitted on 10 frames, 6 of them out-of-block" in " ".join(result.output.split())
    tuning = load_tuning(out)
    assert len(tuning.frames) == 10 and all(0 <= f < 200 for f in tuning.frames)
    # asked to keep them: exactly the frames it counted, readable, at the calibrated size
    kept = sorted((tmp_path / "kept").glob("*.jpg"))
    assert [p.name for p in kept] == [f"view001-{f:06d}.jpg" for f in tuning.frames]
    assert cv2.imread(str(kept[0])).shape == (576, 768, 3)
    assert list(tmp_path.glob("*.jpg")) == []
    memo = MemoCounter(counter)  # not asked: the tuning file is all it writes
    plain = tmp_path / "plain"
    plain.mkdir()
    again = CliRunner().invoke(app, ["tune", str(DEMO_SITE), "--camera", "view001", "--labels", str(HEADS),
                                     "--frames", "0:200", "--max-frames", "6", "--folds", "3",
                                     "--interval-frames", "6", "--out", str(plain / "t.json")],
                               obj=uses(memo))
    assert again.exit_code == 0, again.output
    assert [p.name for p in plain.iterdir()] == ["t.json"]
    assert 0.1 <= tuning.gain <= 10
    bad = CliRunner().invoke(app, ["tune", str(DEMO_SITE), "--camera", "nope", "--labels", str(HEADS),
                                   "--frames", "0:200", "--out", str(out)])
    assert bad.exit_code == 2 and "nope" in bad.output


@pytest.mark.skipif(not FEET.is_file(), reason=f"PETS annotated foot points not found at {FEET}")
def test_eval_site_with_the_shipped_tuning_reports_coverage(tmp_path: Path):
    """Held-back frames (>= 200): the tuned count is close to the annotation, with coverage90.

    The command builds the model the shipped tuning names (its gain was fitted to that model).
    """
    shutil.copy(SHIPPED, tmp_path / "t.json")
    out = tmp_path / "e.json"
    result = CliRunner().invoke(app, ["eval-site", str(DEMO_SITE), "--camera", "view001", "--feet", str(FEET),
                                      "--tuning", str(tmp_path / "t.json"), "--frames", "200:795:85",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    count = data["count"]
    assert {"n", "mae", "bias", "truth_mean", "measured_mean", "coverage90"} <= set(count)
    assert count["n"] == 7 and 0.0 <= count["coverage90"] <= 1.0
    assert count["mae"] <= 2.5, count
    assert data["meta"]["tuning"].endswith("t.json")
