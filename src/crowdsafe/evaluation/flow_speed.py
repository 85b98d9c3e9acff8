"""How fast an image velocity says annotated heads move, against their annotated displacement.

Gate counts are density x velocity: a velocity reading k times the heads' speed reads k times
the crossings, so the speed ratio is checked on its own, on annotated video, before any gate.
The annotations are ground truth for this check; nothing is fitted to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from crowdsafe.evaluation.site import match_points
from crowdsafe.measure.flow import _bilinear

#: Heads are matched to the annotation SPAN frames later; their velocity is that displacement /
#: SPAN, which averages the annotation's jitter (and the video's frame timing) over SPAN frames.
SPAN = 5
#: Heads that moved less than this over SPAN frames are left out (standing, or annotation jitter).
MIN_MOVE_PX = 10.0
#: A velocity is read at the head and 10, 20 and 30 px below it (head and upper torso), where a
#: walker's pixels move together.
READ_BELOW_PX = (0.0, 10.0, 20.0, 30.0)
#: A frame pair whose mean absolute difference exceeds this multiple of its neighbours' median
#: spans a dropped frame: the scene moved about twice as far as in the pairs around it.
DROP_DIFF_RATIO = 1.3


@dataclass(frozen=True)
class SpeedRatio:
    """Velocity readings against annotated head velocity: 1.0 = unbiased."""

    slope: float  # sum(e . t) / sum(|t|^2): the mass-weighted ratio that a flux sees
    median: float  # median over heads of (e . t) / |t|^2
    heads: int


def moving_heads(heads: Mapping[int, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions at frame k, annotated velocity in px per frame) of the heads that moved."""
    a, c = heads.get(k), heads.get(k + SPAN)
    if a is None or c is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = [(i, j) for i, j in match_points(a, c, 80.0).items() if np.hypot(*(c[j] - a[i])) >= MIN_MOVE_PX]
    return (np.array([a[i] for i, _ in pairs]).reshape(-1, 2),
            np.array([(c[j] - a[i]) / SPAN for i, j in pairs]).reshape(-1, 2))


def read_velocity(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A velocity field (H, W, 2) averaged over each head and the torso below it."""
    return np.mean([_bilinear(field, points[:, 0], points[:, 1] + dy) for dy in READ_BELOW_PX], axis=0)


def speed_ratio(heads: Mapping[int, np.ndarray], starts: Iterable[int],
                velocity: Callable[[int], np.ndarray]) -> SpeedRatio:
    """Speed ratio of ``velocity(k)`` (px per frame at frame k) at the moving heads of ``starts``
    (frames with no annotation SPAN frames later are passed over)."""
    num = den = 0.0
    per: list[float] = []
    for k in starts:
        p, t = moving_heads(heads, k)
        if len(p) == 0:
            continue
        e = read_velocity(velocity(k), p)
        num += float((e * t).sum())
        den += float((t**2).sum())
        per.extend(((e * t).sum(1) / (t**2).sum(1)).tolist())
    if not per:
        raise ValueError("no moving annotated heads in these frames")
    return SpeedRatio(slope=num / den, median=float(np.median(per)), heads=len(per))


def dropped_frame_pairs(frames: list[np.ndarray]) -> np.ndarray:
    """For each pair (k, k+1): whether it spans a dropped frame (``DROP_DIFF_RATIO``)."""
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.int16) if f.ndim == 3 else f.astype(np.int16)
            for f in frames]
    diff = np.array([float(np.mean(np.abs(grey[k + 1] - grey[k]))) for k in range(len(grey) - 1)])
    around = np.array([np.median(diff[max(0, k - 3):k + 4]) for k in range(len(diff))])
    return diff > DROP_DIFF_RATIO * around


def followed_flow(frames: list[np.ndarray],
                  flow: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Displacement per frame of each pixel of ``frames[0]`` followed through the one-frame flows of
    the frames after it: over a span that includes dropped frames in proportion, where one pair
    reads whether its own interval dropped a frame or not."""
    h, w = frames[0].shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    moved = np.zeros((h, w, 2), np.float32)
    for first, second in itertools.pairwise(frames):
        step = flow(first, second).astype(np.float32)
        moved += cv2.remap(step, gx + moved[..., 0], gy + moved[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return moved / max(len(frames) - 1, 1)
