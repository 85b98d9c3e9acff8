"""Where a head's motion is read: the body below it, carried back to head height through the pose.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.body``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsafe.geometry.ground_map import GroundMap

#: How far below the head the body's motion is read, metres (head 1.6 m → torso 1.1 m).
BODY_DROP_M = 0.5
_EPS_M = 0.01


@dataclass(frozen=True)
class BodyMotion:
    """Per density cell: image offset head → torso point (px), and the torso→head velocity map."""

    offset_px: np.ndarray  # (rows, cols, 2); 0 where unknown
    to_head: np.ndarray  # (rows, cols, 2, 2); identity where unknown


def _jacobian(ground_map: GroundMap, ground: np.ndarray, z: float) -> np.ndarray:
    """(N, 2, 2) d(image)/d(ground) of the points ``z`` above (N, 2) ground points."""
    pose = ground_map.pose
    assert pose is not None
    cols = []
    for axis in (0, 1):
        step = np.zeros(2)
        step[axis] = _EPS_M
        hi = pose.project(np.column_stack([ground + step, np.full(len(ground), z)]))
        lo = pose.project(np.column_stack([ground - step, np.full(len(ground), z)]))
        cols.append((hi - lo) / (2 * _EPS_M))
    return np.stack(cols, axis=2)


def body_motion(ground_map: GroundMap, drop_m: float = BODY_DROP_M) -> BodyMotion | None:
    """The body-motion fields of a camera, or None where density is at the floor or the pose unknown."""
    head = ground_map.plane_height_m
    if head <= 0 or ground_map.pose is None or not ground_map.valid.any():
        return None
    torso = max(head - drop_m, 0.0)
    rows, cols = ground_map.shape
    offset = np.zeros((rows, cols, 2))
    to_head = np.tile(np.eye(2), (rows, cols, 1, 1))
    centres = ground_map.cell_centres_ground()[ground_map.valid]
    ok = np.all(np.isfinite(centres), axis=1)
    g = centres[ok]
    pose = ground_map.pose
    head_px = pose.project(np.column_stack([g, np.full(len(g), head)]))
    torso_px = pose.project(np.column_stack([g, np.full(len(g), torso)]))
    j_head, j_torso = _jacobian(ground_map, g, head), _jacobian(ground_map, g, torso)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = j_head @ np.linalg.inv(j_torso)
    good = np.all(np.isfinite(torso_px - head_px), axis=1) & np.all(np.isfinite(m), axis=(1, 2))
    idx = np.flatnonzero(ground_map.valid.ravel())[ok][good]
    offset.reshape(-1, 2)[idx] = (torso_px - head_px)[good]
    to_head.reshape(-1, 2, 2)[idx] = m[good]
    return BodyMotion(offset_px=offset, to_head=to_head)
