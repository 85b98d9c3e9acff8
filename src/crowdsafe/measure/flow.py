"""Flow through a line without following anyone: density times velocity, integrated along the line.

Why and how: docs/design-notes.md, ``crowdsafe.measure.flow``."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from crowdsafe.geometry.body import BodyMotion

#: Optical flow runs on frames downscaled to at most this side. Far people are a few pixels
#: wide, and coarser flow smooths their motion into the still background around them.
FLOW_MAX_SIDE = 768


@dataclass(frozen=True)
class LineFlux:
    """People per second crossing a line, split by direction (positive = left of a→b)."""

    positive_per_s: float
    negative_per_s: float


def optical_flow(prev_bgr: np.ndarray, next_bgr: np.ndarray, dt_s: float,
                 spread_px: float = 0.0, moving_px: float = 0.5) -> np.ndarray:
    """Velocity (H, W, 2) in original-image pixels per second, by OpenCV's DIS flow.

    ``spread_px`` > 0 spreads the velocity of moving pixels (faster than ``moving_px`` per
    frame) over that Gaussian sigma by normalised convolution, for density maps much wider than
    the moving pixels. Off by default: it also mixes in the slow pixels at a person's edges and,
    measured with ``crowdsafe eval-site``, lowered the measured flux on the sample video.
    """
    if dt_s <= 0:
        raise ValueError("frames of a flow pair must be in time order")
    h, w = prev_bgr.shape[:2]
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    size = (max(round(w * scale), 8), max(round(h * scale), 8))
    a = cv2.cvtColor(cv2.resize(prev_bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    b = cv2.cvtColor(cv2.resize(next_bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None)
    if spread_px > 0:
        moving = (np.linalg.norm(flow, axis=2) > moving_px * scale).astype(np.float32)
        sigma = spread_px * scale
        weight = cv2.GaussianBlur(moving, (0, 0), sigma)
        spread = cv2.GaussianBlur(flow * moving[:, :, None], (0, 0), sigma)
        flow = np.where(weight[:, :, None] > 1e-3, spread / np.maximum(weight, 1e-3)[:, :, None], 0.0)
    flow = cv2.resize(flow.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return flow * (1.0 / (scale * dt_s))


def _bilinear(grid: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample ``grid`` (H, W[, C]) at fractional pixel centres, clamped at the border."""
    h, w = grid.shape[:2]
    xs = np.clip(xs - 0.5, 0, w - 1)
    ys = np.clip(ys - 0.5, 0, h - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = xs - x0, ys - y0
    if grid.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def line_flux(density: np.ndarray, cell: int, velocity: np.ndarray,
              a: tuple[float, float], b: tuple[float, float], step_px: float = 2.0,
              body: BodyMotion | None = None) -> LineFlux:
    """Flux of the density map through the image segment a→b.

    ``density`` is people per ``cell``x``cell`` block (the counter's map); ``velocity`` is
    (H, W, 2) pixels/s at image resolution. Positive flux crosses from the right of a→b to its
    left (in image coordinates with y down, "left" is the side of the normal (dy, -dx)).

    ``body`` (``geometry.body``) reads each line point's velocity at the torso below it and
    carries it to head height: with head-height density, that is the head's motion, measured
    where optical flow is reliable.
    """
    ax, ay = a
    bx, by = b
    length = float(np.hypot(bx - ax, by - ay))
    if length < 1.0:
        raise ValueError("line is shorter than one pixel")
    n_samples = max(int(np.ceil(length / step_px)), 1)
    t = (np.arange(n_samples) + 0.5) / n_samples
    xs, ys = ax + t * (bx - ax), ay + t * (by - ay)
    ds = length / n_samples
    normal = np.array([(by - ay), -(bx - ax)]) / length
    rho = _bilinear(density, xs / cell, ys / cell) / float(cell * cell)  # people per pixel²
    if body is None:
        v = _bilinear(velocity, xs, ys)
    else:
        offset = _bilinear(body.offset_px, xs / cell, ys / cell)
        to_head = _bilinear(body.to_head.reshape(*body.to_head.shape[:2], 4), xs / cell, ys / cell)
        v = np.einsum("nij,nj->ni", to_head.reshape(-1, 2, 2),
                      _bilinear(velocity, xs + offset[:, 0], ys + offset[:, 1]))
    flux = rho * (v @ normal) * ds
    return LineFlux(positive_per_s=float(flux[flux > 0].sum()),
                    negative_per_s=float(-flux[flux < 0].sum()))


def persons_per_metre_minute(flux: LineFlux, width_m: float) -> float:
    """Specific flow through a gate: both directions, per metre of clear width, per minute."""
    if width_m <= 0:
        raise ValueError("gate width must be positive")
    return (flux.positive_per_s + flux.negative_per_s) * 60.0 / width_m
