"""A camera's own fine-tuned back-end layers: the small file ``crowdsafe tune --finetune`` writes.

The file replaces the last layers of a shipped model (the ones commissioning trained on the
camera's own annotated frames); everything before them still comes from the verified published
weights, so a fine-tuned camera runs the same ONNX graph builder as every other camera. It is
checked against the SHA-256 its tuning file records, like the shipped weights against theirs:
a layer file edited or swapped after commissioning is refused, not silently counted with.

A fine-tuned model is named by a key, ``<base>+<sha256[:12]>`` (``dense+3f0c...``), wherever a
model name selects an engine (per-camera counters, Ray replicas), so two cameras with their own
layers never share an engine and one camera's layers never count another's frames.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdsafe.counting.variants import MODELS, ModelName, merge_layers
from crowdsafe.counting.weights import WeightsError, sha256_file

KEY_SEPARATOR = "+"


@dataclass(frozen=True)
class LayersRef:
    """Where a camera's fine-tuned layers are, the SHA-256 they must have, and what they replace.

    ``activation_scales``: int8 input scales of the fine-tuned convs, calibrated on the camera's
    own frames (the shipped table's scales were measured through the published layers).
    """

    path: str
    sha256: str
    base: ModelName = "dense"
    activation_scales: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        return model_key(self.base, self.sha256)


def model_key(base: str, sha256: str) -> str:
    return f"{base}{KEY_SEPARATOR}{sha256[:12]}"


def base_of(key: str) -> ModelName:
    """The shipped model a (possibly fine-tuned) model key builds on."""
    base = key.split(KEY_SEPARATOR, 1)[0]
    if base not in MODELS:
        raise ValueError(f"unknown model {key!r}")
    return base  # type: ignore[return-value]


def is_finetuned(key: str) -> bool:
    return KEY_SEPARATOR in key


def save_layers(path: Path, layers: Mapping[str, np.ndarray]) -> str:
    """Write the layers (float32, uncompressed ``.npz``, no pickle) atomically; their SHA-256."""
    buffer = io.BytesIO()
    # Fixed member order and timestamps: the same layers always give the same bytes and digest.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(layers):
            array = io.BytesIO()
            np.lib.format.write_array(array, np.ascontiguousarray(layers[name], np.float32),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, array.getvalue())
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)
    return sha256_file(path)


def verify_layers(ref: LayersRef) -> Path:
    path = Path(ref.path)
    if not path.is_file():
        raise WeightsError(f"fine-tuned layers not found at {path} (the tuning file names them; keep "
                           "the two files together)")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise WeightsError(f"fine-tuned layers at {path} fail verification (sha256 {actual}, expected "
                           f"{ref.sha256} from the tuning file): re-run `crowdsafe tune --finetune`")
    return path


def load_layers(ref: LayersRef) -> dict[str, np.ndarray]:
    """The verified layers as float32 arrays keyed by state-dict name."""
    path = verify_layers(ref)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], np.float32) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"fine-tuned layers at {path} are not plain arrays: {exc}") from None


def finetuned_weights(base: dict[str, np.ndarray], ref: LayersRef) -> dict[str, np.ndarray]:
    """Every layer of the fine-tuned model: ``base`` with the verified layers swapped in."""
    return merge_layers(base, load_layers(ref))
