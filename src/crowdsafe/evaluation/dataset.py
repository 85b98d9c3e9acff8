"""Labelled image folders: a ``labels.json`` next to the images it describes.

Format: ``{"<image file>": {"count": N, "points": [[x, y], ...]}}``. Only counts are used;
head points are accepted but never needed. Any inconsistency is an error naming the file
and entry, because a silently dropped image changes every metric computed from the set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from crowdsafe.sources.images import natural_key

LABELS = "labels.json"


class DatasetError(ValueError):
    """The folder is not a usable labelled dataset; the message says what to fix."""


@dataclass(frozen=True)
class LabelledImage:
    name: str
    path: Path
    count: float


@dataclass(frozen=True)
class Dataset:
    """A labelled folder; ``images`` in natural file-name order, so ``--limit`` is stable."""

    name: str
    root: Path
    images: tuple[LabelledImage, ...]


def _count_of(name: str, entry: object, labels: Path) -> float:
    if isinstance(entry, dict) and "count" in entry:
        value = entry["count"]
    elif isinstance(entry, dict) and isinstance(entry.get("points"), list):
        value = len(entry["points"])
    else:
        raise DatasetError(f"{labels}: entry {name!r} has no \"count\" (expected "
                           "{\"count\": N, \"points\": [...]})")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise DatasetError(f"{labels}: entry {name!r} has count {value!r}; expected a number >= 0")
    return float(value)


def load_dataset(folder: Path) -> Dataset:
    """The dataset in ``folder``, checked: labels parse, every labelled image exists."""
    labels = folder / LABELS
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    if not labels.is_file():
        raise DatasetError(f"{folder}: no {LABELS} here (nor in its sub-folders)")
    try:
        data = json.loads(labels.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{labels}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{labels}: cannot read ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{labels}: expected a non-empty object {{\"<image>\": "
                           "{\"count\": N}}")
    images = [LabelledImage(name, folder / name, _count_of(name, entry, labels))
              for name, entry in data.items()]
    missing = [image.name for image in images if not image.path.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                          else "")
        raise DatasetError(f"{labels}: {len(missing)} labelled image(s) missing: {shown}")
    images.sort(key=lambda image: natural_key(image.name))
    return Dataset(folder.name, folder, tuple(images))


def find_datasets(path: Path) -> list[Dataset]:
    """``path`` itself if it holds labels.json, else its sub-folders that do (sorted)."""
    if not path.exists():
        raise DatasetError(f"{path}: no such folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (give a folder holding {LABELS})")
    if (path / LABELS).exists():
        return [load_dataset(path)]
    children = sorted((p for p in path.iterdir() if p.is_dir() and (p / LABELS).exists()),
                      key=lambda p: natural_key(p.name))
    if not children:
        raise DatasetError(f"{path}: no {LABELS} here nor in any sub-folder")
    return [load_dataset(child) for child in children]
