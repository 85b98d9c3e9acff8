"""Where a site line is measured: the camera that sees most of it, and its image segment there.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.lines``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.site import SiteGeometry

log = logging.getLogger(__name__)

#: Points sampled along a ground line to find the part a camera sees.
LINE_SAMPLES = 256


@dataclass(frozen=True)
class LinePlan:
    """Where a site line is measured: one camera, an image segment, and which way is "in"."""

    line_id: str
    camera_id: str
    a_px: tuple[float, float]
    b_px: tuple[float, float]
    in_is_positive: bool  # line_flux's positive side is the line's "in" side
    width_m: float  # clear width of the visible part of the gate
    visible_fraction: float


def plan_line(geometry: SiteGeometry, line_id: str) -> LinePlan | None:
    """The camera seeing most of the line and the line's image there; None if no camera sees it."""
    line = next(ln for ln in geometry.site.lines if ln.id == line_id)
    t = (np.arange(LINE_SAMPLES) + 0.5) / LINE_SAMPLES
    a, b = np.asarray(line.a, float), np.asarray(line.b, float)
    ground = a + t[:, None] * (b - a)
    best: tuple[float, str, np.ndarray] | None = None
    for cid, cam in geometry.cameras.items():
        image = apply(cam.ground_map.ground_to_image, ground)
        _, _, seen = cam.ground_map.cell_of(image)
        fraction = float(seen.mean())
        if fraction > 0 and (best is None or fraction > best[0]):
            best = (fraction, cid, image[seen])
    if best is None:
        return None
    fraction, cid, visible = best
    a_px, b_px = visible[0], visible[-1]
    if float(np.hypot(*(b_px - a_px))) < 2.0:
        return None
    # Which image side is "in": push the middle of the visible part along the ground normal.
    cam = geometry.cameras[cid]
    mid_px = (a_px + b_px) / 2
    mid = apply(cam.ground_map.image_to_ground, mid_px[None])[0]
    step = 0.05 * max(line.length_m, 1.0)
    inward = apply(cam.ground_map.ground_to_image, (mid + step * np.asarray(line.positive_normal()))[None])[0]
    dx, dy = b_px - a_px
    positive_side = np.array([dy, -dx])  # line_flux's positive normal in image coordinates
    in_is_positive = bool(np.dot(inward - mid_px, positive_side) > 0)
    width = (line.width_m or line.length_m) * fraction
    return LinePlan(line.id, cid, (float(a_px[0]), float(a_px[1])), (float(b_px[0]), float(b_px[1])),
                    in_is_positive, width, fraction)


def plan_lines(geometry: SiteGeometry) -> dict[str, LinePlan]:
    """Plans of every line some camera sees; unseen lines are logged and left out."""
    plans = {}
    for line in geometry.site.lines:
        plan = plan_line(geometry, line.id)
        if plan is None:
            log.warning("line %s is not seen by any camera; no flow will be measured", line.id)
        else:
            plans[line.id] = plan
    return plans
