"""Where a site line is measured: the camera that sees most of it, and its image segment there.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.lines``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString, Point

from crowdsafe.config.site import Line, PassageMargins
from crowdsafe.geometry.homography import apply, homography_jacobian
from crowdsafe.geometry.site import SiteGeometry

log = logging.getLogger(__name__)

#: Points sampled along a ground line to find the part a camera sees.
LINE_SAMPLES = 256

#: Standard deviation (image pixels) of the Gaussian that spreads each head in the counter's
#: density map: the fixed kernel the sparse CSRNet was trained with (ShanghaiTech B, sigma 15).
DENSITY_SIGMA_PX = 15.0
#: A line is extended past each end by this many sigmas of the blur, in ground metres there: 2
#: sigmas hold 95 % of a head's mass on the gate's side of the end.
BLUR_SIGMAS = 2.0


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
    #: Ground segment (metres) over which crossings are counted and attributed to the gate.
    passage: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    in_normal: tuple[float, float] = (0.0, 0.0)  # ground unit vector pointing the way "in" goes


def _metres_per_pixel(geometry: SiteGeometry, camera_id: str, ground: np.ndarray) -> float:
    """Ground metres per image pixel (geometric mean of both axes) of the camera at a ground point."""
    gm = geometry.cameras[camera_id].ground_map
    px = apply(gm.ground_to_image, ground[None])[0]
    if not np.all(np.isfinite(px)):
        return float("nan")
    w, h = gm.image_size
    px = np.clip(px, 0.0, [w - 1.0, h - 1.0])
    jac = homography_jacobian(gm.image_to_ground, px[None])[0]
    return float(np.sqrt(abs(np.linalg.det(jac))))


def _segment(line: Line) -> LineString:
    return LineString([line.a, line.b])


def passage_of(geometry: SiteGeometry, line: Line, camera_id: str, blur_m: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The ground segment where the line's crossings are counted (``Line.passage``).

    Without a passage in the site file, a→b extended at each end by the density blur's footprint
    there (``blur_m`` when given, else ``BLUR_SIGMAS`` x ``DENSITY_SIGMA_PX`` in metres at that end),
    but never further than half-way to another line, nor into another line's given passage.
    """
    a, b = np.asarray(line.a, float), np.asarray(line.b, float)
    if isinstance(line.passage, tuple):
        return np.asarray(line.passage[0], float), np.asarray(line.passage[1], float)
    unit = (b - a) / float(np.hypot(*(b - a)))
    if isinstance(line.passage, PassageMargins):
        return a - unit * line.passage.beyond_a_m, b + unit * line.passage.beyond_b_m
    ends = []
    for end, direction in ((a, -unit), (b, unit)):
        reach = blur_m if blur_m is not None else \
            BLUR_SIGMAS * DENSITY_SIGMA_PX * _metres_per_pixel(geometry, camera_id, end)
        reach = float(reach) if np.isfinite(reach) else 0.0
        tip = Point(*end)
        for other in geometry.site.lines:
            if other.id == line.id:
                continue
            given = isinstance(other.passage, tuple)
            theirs = LineString(other.passage) if given else _segment(other)  # type: ignore[arg-type]
            ahead = LineString([end, end + direction * max(reach, 1e-6)])
            if ahead.distance(theirs) < tip.distance(theirs):  # reaching towards the other line
                reach = min(reach, float(tip.distance(theirs)) * (1.0 if given else 0.5))
        ends.append(end + direction * reach)
    return ends[0], ends[1]


def plan_line(geometry: SiteGeometry, line_id: str, blur_m: float | None = None) -> LinePlan | None:
    """The camera seeing most of the line and the line's image there; None if no camera sees it.

    ``blur_m``: the density blur's footprint in ground metres for the automatic passage (default:
    the counter's kernel in pixels, converted at each end of the line).
    """
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
    pa, pb = passage_of(geometry, line, cid, blur_m)
    normal = np.asarray(line.positive_normal(), float)
    along = (pb - pa) / max(float(np.hypot(*(pb - pa))), 1e-12)
    across = np.array([-along[1], along[0]])  # the passage's own normal, turned the way "in" goes
    across = across if float(across @ normal) >= 0 else -across
    return LinePlan(line.id, cid, (float(a_px[0]), float(a_px[1])), (float(b_px[0]), float(b_px[1])),
                    in_is_positive, width, fraction,
                    ((float(pa[0]), float(pa[1])), (float(pb[0]), float(pb[1]))),
                    (float(across[0]), float(across[1])))


def plan_lines(geometry: SiteGeometry, blur_m: float | None = None) -> dict[str, LinePlan]:
    """Plans of every line some camera sees; unseen lines are logged and left out."""
    plans = {}
    for line in geometry.site.lines:
        plan = plan_line(geometry, line.id, blur_m)
        if plan is None:
            log.warning("line %s is not seen by any camera; no flow will be measured", line.id)
        else:
            plans[line.id] = plan
    return plans
