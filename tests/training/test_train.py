"""``crowdsafe train``: a 2-step smoke run of the real loop on small crops of real TRAIN images.

Training itself never runs in CI; this checks that the pipeline (targets, feature cache,
torch loop, fp16 export, curve, report, interval tables) works and is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting import weights as w
from crowdsafe.training.data import density_target, split

torch = pytest.importorskip("torch", reason="crowdsafe[train] (torch) is not installed")
runner = CliRunner()


@pytest.fixture(scope="module")
def train_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny TRAIN folders: 256x256 crops of real B and A train images with their head points."""
    root = tmp_path_factory.mktemp("train")
    for split_name, names in (("shanghaitech_b_train", 6), ("shanghaitech_a_train", 2)):
        src = shared_data / "crowd-train" / split_name
        if not src.is_dir():
            pytest.skip(f"{src} not found")
        labels = json.loads((src / "labels.json").read_text())
        out = root / split_name.replace("shanghaitech", "tiny")
        out.mkdir()
        tiny = {}
        for name in sorted(labels)[:names]:
            image = cv2.imread(str(src / name))[:256, :256]
            cv2.imwrite(str(out / name.replace(".jpg", ".png")), image)
            pts = [p for p in labels[name]["points"] if p[0] < 256 and p[1] < 256]
            tiny[name.replace(".jpg", ".png")] = {"count": len(pts), "points": pts}
        (out / "labels.json").write_text(json.dumps(tiny))
    return root


def test_density_target_sums_to_heads_inside() -> None:
    points = np.array([[10.0, 10.0], [0.5, 0.5], [63.0, 40.0], [200.0, 5.0]])  # last is outside
    target = density_target(points, 48, 64)
    assert target.shape == (6, 8)
    assert target.sum() == pytest.approx(3.0, abs=1e-4)
    assert target[1, 1] > target[5, 0]  # mass stays near its head


def test_split_is_seeded_and_disjoint(train_root: Path) -> None:
    from crowdsafe.training.data import load_train_folder

    images = load_train_folder(train_root / "tiny_b_train")
    a_train, a_val = split(images, 2, seed=0)
    _, b_val = split(images, 2, seed=0)
    assert [i.name for i in a_val] == [i.name for i in b_val] and len(a_train) == 4
    assert not {i.name for i in a_train} & {i.name for i in a_val}


def test_two_step_training_smoke(train_root: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(w.ENV_WEIGHTS, str(w.weights_path()))
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path / "cache"))  # feature cache stays in the test
    args = ["train", str(train_root / "tiny_b_train"), "--steps", "2", "--batch", "2",
            "--crop", "8", "--val", "2", "--eval-every", "1", "--warmup", "0", "--lr", "1e-4",
            "--calibrate-with", str(train_root / "tiny_a_train"), "--calibrate-images", "2",
            "--threads", "1"]
    first = runner.invoke(app, [*args, "--out-dir", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    out = tmp_path / "one"
    report = json.loads((out / "train_report.json").read_text())
    assert len(report["log"]["losses"]) == 2 and all(np.isfinite(report["log"]["losses"]))
    assert [e[0] for e in report["log"]["evals"]] == [0, 1, 2]
    layers = np.load(out / "sparse_b.npz")
    assert set(layers.files) == {f"{n}.{p}" for n in ("backend.4", "backend.6", "backend.8",
                                                      "backend.10", "output_layer")
                                 for p in ("weight", "bias")}
    assert all(layers[k].dtype == np.float16 for k in layers.files)
    published = w.load_weights()
    if report["log"]["best_step"] > 0:
        assert not np.array_equal(layers["output_layer.weight"].astype(np.float32),
                                  published["output_layer.weight"])
    curve = cv2.imread(str(out / "loss_curve.png"))
    assert curve is not None and curve.shape == (420, 900, 3)
    tables = json.loads((out / "intervals.json").read_text())["tables"]
    assert set(tables) == {"dense", "sparse"}
    assert report["auto_threshold_per_mpx"] > 0
    again = runner.invoke(app, [*args, "--out-dir", str(tmp_path / "two")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "two" / "train_report.json").read_text())["sha256"] == report["sha256"]


def test_train_refuses_evaluation_sets(crowd_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(crowd_data / "shanghaitech_b"), "--out-dir",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert "evaluation set" in " ".join(result.stderr.split())


def test_full_backend_with_mirrors_scales_and_average(train_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped recipe's options: every backend conv trained, mirrored and shrunk copies,
    a weight average, and the output bias held at its published value (times the fitted k)."""
    monkeypatch.setenv(w.ENV_WEIGHTS, str(w.weights_path()))
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path / "cache"))
    result = runner.invoke(app, [
        "train", str(train_root / "tiny_b_train"), "--steps", "2", "--batch", "2", "--crop", "8",
        "--val", "2", "--eval-every", "1", "--warmup", "0", "--lr", "1e-4", "--cut", "frontend.21",
        "--flips", "--scales", "1,0.5", "--ema", "0.9", "--threads", "1",
        "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "12 train samples (4 images, mirrored too, scales 1,0.5)" in " ".join(result.stderr.split())
    report = json.loads((tmp_path / "out" / "train_report.json").read_text())
    assert report["scales"] == [1.0, 0.5] and report["config"]["ema"] == 0.9
    layers = np.load(tmp_path / "out" / "sparse_b.npz")
    assert {k.split(".weight")[0] for k in layers.files if k.endswith(".weight")} == {
        "backend.0", "backend.2", "backend.4", "backend.6", "backend.8", "backend.10", "output_layer"}
    published = w.load_weights()["output_layer.bias"]
    assert layers["output_layer.bias"].astype(np.float32) == pytest.approx(
        published * report["output_scale"], rel=2e-3)
    shrunk = sorted((tmp_path / "cache").rglob("*-x0.5.target-s4.npy"))
    assert len(shrunk) == 4 and all(np.load(p).shape == (16, 16) for p in shrunk)


def test_train_refuses_bad_scales(train_root: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(train_root / "tiny_b_train"), "--scales", "1,5",
                                 "--out-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "between 0.2 and 2" in " ".join(result.stderr.split())


def test_whole_images_and_frozen_backend_head(train_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """--crop 0 trains on whole feature maps; --train-from keeps backend.0/.2 at their published
    weights (run in torch from the frontend cache) and leaves them out of the shipped file."""
    monkeypatch.setenv(w.ENV_WEIGHTS, str(w.weights_path()))
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path / "cache"))
    result = runner.invoke(app, [
        "train", str(train_root / "tiny_b_train"), "--steps", "2", "--batch", "2", "--crop", "0",
        "--val", "2", "--eval-every", "2", "--warmup", "0", "--cut", "frontend.21",
        "--train-from", "backend.4", "--sigma", "8", "--threads", "1", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    layers = np.load(tmp_path / "out" / "sparse_b.npz")
    assert {k.rsplit(".", 1)[0] for k in layers.files} == {
        "backend.4", "backend.6", "backend.8", "backend.10", "output_layer"}
    report = json.loads((tmp_path / "out" / "train_report.json").read_text())
    assert report["sigma_px"] == 8.0 and report["config"]["crop"] == 0
    assert len(sorted((tmp_path / "cache").rglob("*.target-s8.npy"))) == 6
    bad = runner.invoke(app, ["train", str(train_root / "tiny_b_train"), "--cut", "frontend.21",
                              "--train-from", "frontend.0", "--out-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "expected a conv after --cut frontend.21" in " ".join(bad.stderr.split())


def test_post_fit_only_from_earlier_layers(train_root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--steps 0 --init-from: the earlier run's layers, re-scored, rescaled and re-tabled."""
    monkeypatch.setenv(w.ENV_WEIGHTS, str(w.weights_path()))
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path / "cache"))
    common = ["--batch", "2", "--crop", "8", "--val", "2", "--warmup", "0", "--threads", "1",
              "--scales", "1,0.5", "--calibrate-with", str(train_root / "tiny_a_train"),
              "--calibrate-images", "2"]
    first = runner.invoke(app, ["train", str(train_root / "tiny_b_train"), "--steps", "2",
                                "--lr", "1e-3", *common, "--out-dir", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", str(train_root / "tiny_b_train"), "--steps", "0",
                                "--init-from", str(tmp_path / "one" / "sparse_b.npz"), *common,
                                "--out-dir", str(tmp_path / "two")])
    assert again.exit_code == 0, again.output
    one = json.loads((tmp_path / "one" / "train_report.json").read_text())
    two = json.loads((tmp_path / "two" / "train_report.json").read_text())
    assert two["log"]["losses"] == [] and two["log"]["best_step"] == 0
    # The first run's shipped counts (after its scale) are where the second starts from.
    first_counts = [s["sparse"] for s in one["val"]]
    second_raw = [s["sparse"] / two["output_scale"] for s in two["val"]]
    assert second_raw == pytest.approx(first_counts, rel=2e-3, abs=1e-3)
    sparse_table = json.loads((tmp_path / "two" / "intervals.json").read_text())["tables"]["sparse"]
    assert "2 resized copies" in sparse_table["fitted_on"]
    assert len(two["calibration_resized_val"]) == 2
    bad = runner.invoke(app, ["train", str(train_root / "tiny_b_train"), "--steps", "0",
                              "--init-from", str(tmp_path / "one" / "loss_curve.png"), *common,
                              "--out-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--init-from" in bad.stderr
