"""Training images, their density targets and the train/validation split.

Targets: every annotated head point becomes a 2-D Gaussian with sigma = 4 input pixels
(fixed kernel: ShanghaiTech B people are large and seen at similar scales, where the
geometry-adaptive kernel of dense sets is not needed), summed into the network's 8x8 output
cells. Each target therefore sums to the number of heads inside the cropped frame.
``--sigma 15`` gives CSRNet's own kernel for B; it was only tried in short pilots here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.graph import STRIDE
from crowdsafe.sources.images import natural_key

SIGMA_PX = 4.0


class TrainDataError(ValueError):
    """The training folder is unusable; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TrainImage:
    name: str
    path: Path
    points: np.ndarray  # (K, 2) x, y in pixels


def load_train_folder(folder: Path) -> list[TrainImage]:
    """Images with head points from ``labels.json``, in natural name order (stable splits)."""
    labels = folder / "labels.json"
    if not labels.is_file():
        raise TrainDataError(f"{folder}: no labels.json (expected a TRAIN folder of crowd images)")
    try:
        data = json.loads(labels.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainDataError(f"{labels}: cannot read ({exc})") from None
    images = []
    for name, entry in data.items():
        points = entry.get("points") if isinstance(entry, dict) else None
        if not isinstance(points, list):
            raise TrainDataError(f"{labels}: entry {name!r} has no head points (training needs them)")
        path = folder / name
        if not path.is_file():
            raise TrainDataError(f"{labels}: image {name!r} missing")
        images.append(TrainImage(name, path, np.asarray(points, np.float32).reshape(-1, 2)))
    images.sort(key=lambda im: natural_key(im.name))
    return images


def split(images: list[TrainImage], n_val: int, seed: int) -> tuple[list[TrainImage], list[TrainImage]]:
    """A seeded random validation subset of the TRAIN images; the rest trains."""
    if not 0 < n_val < len(images):
        raise TrainDataError(f"cannot hold out {n_val} of {len(images)} images for validation")
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return ([im for i, im in enumerate(images) if i not in val],
            [im for i, im in enumerate(images) if i in val])


def density_target(points: np.ndarray, height: int, width: int, sigma: float = SIGMA_PX) -> np.ndarray:
    """(H//8, W//8) float32 density: Gaussian per head, summed over each 8x8 output cell.

    Mass a Gaussian would spill beyond the frame is folded back (reflected border), so the
    target sums to the number of points inside the network's (floor to 8 pixels) view.
    """
    h8, w8 = height // STRIDE, width // STRIDE
    impulses = np.zeros((h8 * STRIDE, w8 * STRIDE), np.float32)
    for x, y in points:
        xi, yi = int(x), int(y)
        if 0 <= xi < w8 * STRIDE and 0 <= yi < h8 * STRIDE:
            impulses[yi, xi] += 1.0
    blurred = cv2.GaussianBlur(impulses, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    cells = blurred.reshape(h8, STRIDE, w8, STRIDE).sum(axis=(1, 3))
    total = impulses.sum()
    if total > 0 and cells.sum() > 0:
        cells *= total / cells.sum()
    return cells.astype(np.float32)
