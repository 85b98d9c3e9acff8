"""Flow through a line without following anyone: density times velocity, integrated along the line.

Why and how: docs/design-notes.md, ``crowdsafe.measure.flow``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from crowdsafe.geometry.body import BodyMotion
from crowdsafe.geometry.homography import apply, homography_jacobian

#: Sub-samples per density cell side for the swept path: a cell's mass starts from 2x2 points
#: spread over the cell rather than one, so it crosses the line over a range of times.
SWEPT_SUBSAMPLES = 2
#: The band's half-width per second of sampling period (metres per second) and its least value:
#: chosen on held-out simulated crowds (``benchmarks/bottleneck.py --choose --seed 100 200``, the
#: grid ``CHOICE_GRID``: 0.5-1.25 m/s, exit side or centred, smallest RMS error), never on the
#: crowds the benchmark reports on. On the exit side the band is twice as deep: 2 m per second
#: of period, so a walker at up to 2 m/s is inside it at one sample at least.
BAND_HALF_WIDTH_M_PER_S = 1.0
BAND_MIN_HALF_WIDTH_M = 0.3
#: Copies of the line the band's flux is averaged over, per side, at least.
BAND_LINES = 8
#: A copy of the passage counts in the band where the camera sees at least this share of what it
#: sees of the passage itself (``band_crossings``): a rule of what a copy can measure, not fitted.
BAND_MIN_VIEW_SHARE = 0.9


def band_half_width_m(period_s: float) -> float:
    """Half-width of the band for a sampling period (``BAND_HALF_WIDTH_M_PER_S``), at least 0.3 m,
    to the centimetre: a live camera's intervals jitter by milliseconds, and each depth's band is
    worked out once (``GateBand``); a band of any depth is unbiased, so a centimetre changes nothing."""
    return round(max(BAND_HALF_WIDTH_M_PER_S * period_s, BAND_MIN_HALF_WIDTH_M), 2)

#: Optical flow runs on frames downscaled to at most this side. Far people are a few pixels
#: wide, and coarser flow smooths their motion into the still background around them.
FLOW_MAX_SIDE = 768
#: OpenCV's DIS flow: the ultrafast preset's search (patch stride 5, 12 gradient-descent
#: iterations, no variational refinement) down to pyramid level 1, the half resolution the medium
#: preset ran at before. The search was most of the live pipeline's cost beside its engine; the
#: resolution is what the people's motion needs. Cost and accuracy: docs/results/speed.md.
FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
FLOW_FINEST_SCALE = 1


def _dis() -> cv2.DISOpticalFlow:
    dis = cv2.DISOpticalFlow.create(FLOW_PRESET)
    dis.setFinestScale(FLOW_FINEST_SCALE)
    return dis


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
    a, b = _grey(prev_bgr, scale), _grey(next_bgr, scale)
    flow = _dis().calc(a, b, None)
    if spread_px > 0:
        moving = (np.linalg.norm(flow, axis=2) > moving_px * scale).astype(np.float32)
        sigma = spread_px * scale
        weight = cv2.GaussianBlur(moving, (0, 0), sigma)
        spread = cv2.GaussianBlur(flow * moving[:, :, None], (0, 0), sigma)
        flow = np.where(weight[:, :, None] > 1e-3, spread / np.maximum(weight, 1e-3)[:, :, None],
                        0.0).astype(np.float32)
    if scale < 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    flow *= np.float32(1.0 / (scale * dt_s))
    return flow


def _grey(bgr: np.ndarray, scale: float) -> np.ndarray:
    """The frame in grey at ``scale``: converted before it is shrunk (one channel to resize, not
    three), and not copied again at full size."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if scale >= 1.0:
        return grey
    h, w = grey.shape[:2]
    size = (max(round(w * scale), 8), max(round(h * scale), 8))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _bilinear(grid: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample ``grid`` (H, W[, C]) at fractional pixel centres, clamped at the border."""
    return _read(grid, _taps(grid.shape[:2], xs, ys))


def _velocity_at(velocity: np.ndarray, xs: np.ndarray, ys: np.ndarray, cell: int,
                 body: BodyMotion | None) -> np.ndarray:
    """Image velocity (px/s) of the heads at (xs, ys): read there, or, with ``body``, read on the
    body below each head (where optical flow has texture) and carried up to head height."""
    if body is None:
        return _bilinear(velocity, xs, ys)
    offset = _bilinear(body.offset_px, xs / cell, ys / cell)
    to_head = _bilinear(body.to_head.reshape(*body.to_head.shape[:2], 4), xs / cell, ys / cell)
    return np.einsum("nij,nj->ni", to_head.reshape(-1, 2, 2),
                     _bilinear(velocity, xs + offset[:, 0], ys + offset[:, 1]))

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
    if float(np.hypot(b[0] - a[0], b[1] - a[1])) < 1.0:
        raise ValueError("line is shorter than one pixel")
    reader = SegmentReader(np.array([[a, b]], float), cell, density.shape[:2], velocity.shape[:2], step_px,
                           body)
    positive, negative = reader.fluxes(density, velocity)[0]
    return LineFlux(positive_per_s=float(positive), negative_per_s=float(negative))


class SegmentReader:
    """Where and with what weights K image segments read a density map and a velocity field, fixed
    by the segments, the maps' shapes and the camera's body motion: worked out once, so a gate's
    band (a dozen or more segments, read every frame) costs two gathers a frame.

    Each segment of length L is read at n = ceil(L / ``step_px``) points, at the centres of n equal
    pieces of length ds = L / n. With rho(p) the density at p in people per pixel² (a cell's count
    / cell²), v(p) the head's image velocity and normal = (dy, -dx) / L, a segment's flux is
    sum over its points of rho(p) x (v(p) . normal) x ds, split by sign. With ``body``, v(p) is
    T(p) u(p + o(p)), the velocity u read on the torso at offset o and carried to head height by
    T, so v . normal = u . (T^T normal): the torso's read point and T^T normal are fixed per point.
    Every read is bilinear at pixel centres, clamped at the border (``_bilinear``).
    """

    def __init__(self, ends: np.ndarray, cell: int, density_shape: tuple[int, int],
                 velocity_shape: tuple[int, int], step_px: float = 2.0,
                 body: BodyMotion | None = None) -> None:
        self.count = len(ends)
        self.shapes = (tuple(density_shape), tuple(velocity_shape))
        d = ends[:, 1] - ends[:, 0]
        length = np.hypot(d[:, 0], d[:, 1])
        n = np.maximum(np.ceil(length / step_px).astype(int), 1)
        self.which = np.repeat(np.arange(self.count), n)
        t = (np.arange(self.which.size) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[self.which]
        hx = ends[self.which, 0, 0] + t * d[self.which, 0]  # the heads on the segments
        hy = ends[self.which, 0, 1] + t * d[self.which, 1]
        normal = (np.column_stack([d[:, 1], -d[:, 0]]) / length[:, None])[self.which]
        # people per pixel² x ds, along the normal: flux = (density read) x (velocity read . coef)
        coef = normal * ((length / n)[self.which] / float(cell * cell))[:, None]
        vx, vy = hx, hy  # where velocity is read
        if body is not None:
            offset = _bilinear(body.offset_px, hx / cell, hy / cell)
            to_head = _bilinear(body.to_head.reshape(*body.to_head.shape[:2], 4), hx / cell, hy / cell)
            coef = np.einsum("nji,nj->ni", to_head.reshape(-1, 2, 2), coef)
            vx, vy = hx + offset[:, 0], hy + offset[:, 1]
        self.coef = coef
        self._density = _taps(density_shape, hx / cell, hy / cell)
        self._velocity = _taps(velocity_shape, vx, vy)

    def fluxes(self, density: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """(K, 2): each segment's flux (positive, negative) in people per second."""
        if (density.shape[:2], velocity.shape[:2]) != self.shapes:
            raise ValueError(f"maps of {density.shape[:2]} and {velocity.shape[:2]}, read with taps for "
                             f"{self.shapes}")
        rho = _read(density, self._density)
        flux = rho * np.einsum("ij,ij->i", _read(velocity, self._velocity), self.coef)
        return np.column_stack([np.bincount(self.which, np.maximum(flux, 0.0), minlength=self.count),
                                np.bincount(self.which, np.maximum(-flux, 0.0), minlength=self.count)])


def _taps(shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) flat indices and weights of the bilinear reads at pixel centres (xs, ys) of a grid of
    ``shape``, clamped at its border: fixed by the points, so a reader of fixed points
    (``SegmentReader``) works them out once and reads any grid of that shape through them."""
    h, w = shape
    xs = np.clip(xs - 0.5, 0, w - 1)
    ys = np.clip(ys - 0.5, 0, h - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = xs - x0, ys - y0
    index = np.column_stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    weight = np.column_stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    return index, weight


def _read(grid: np.ndarray, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``grid`` (H, W[, C]) read through ``_taps``: (N[, C])."""
    index, weight = taps
    flat = grid.reshape(-1, *grid.shape[2:])[index]  # (N, 4[, C])
    return np.einsum("nk...,nk->n...", flat, weight)


def persons_per_metre_minute(flux: LineFlux, width_m: float) -> float:
    """Specific flow through a gate: both directions, per metre of clear width, per minute."""
    if width_m <= 0:
        raise ValueError("gate width must be positive")
    return (flux.positive_per_s + flux.negative_per_s) * 60.0 / width_m


@dataclass(frozen=True)
class GateCrossings:
    """People who crossed a gate's passage during one sampling period, by direction."""

    in_count: float
    out_count: float


def swept_crossings(density: np.ndarray, cell: int, velocity: np.ndarray, image_to_ground: np.ndarray,
                    a: tuple[float, float], b: tuple[float, float], in_normal: tuple[float, float],
                    period_s: float, body: BodyMotion | None = None) -> GateCrossings:
    """People crossing the ground segment a→b in the period centred on this frame.

    Each cell's density is carried along its own velocity, on the ground, from half a period
    before the frame to half a period after it; the mass whose path crosses a→b crossed the
    line in that window. The windows of consecutive samples tile time, so at constant velocity
    every person is counted exactly once whatever the sampling period, where a snapshot of the
    flux times the period sees only the people who happen to be on the line at the sample.

    ``density`` is people per ``cell``x``cell`` block; ``velocity`` (H, W, 2) pixels/s at image
    resolution; ``image_to_ground`` maps the density's image plane to ground metres (the head
    plane of ``GroundMap``); ``in_normal`` is the ground unit vector the "in" direction points
    to. ``body`` reads velocity at the torso and carries it to head height (``line_flux``).
    """
    if period_s <= 0:
        raise ValueError("the sampling period must be positive")
    ground, u, m, steps = _ground_motion(density, cell, velocity, image_to_ground, body)
    pa, pb, n = np.asarray(a, float), np.asarray(b, float), np.asarray(in_normal, float)
    size = _extent(steps, n)
    d = pb - pa
    across = (ground - pa) @ n
    reach = np.abs(u @ n) * (0.5 * period_s)
    # The share of the sub-sample's mass within reach of the line, where it crosses the passage.
    share = _overlap(across, size, -reach, reach)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cross = np.where(np.abs(u @ n) > 0, -across / (u @ n), np.inf)
    along = ((ground + u * t_cross[:, None]) - pa) @ d / float(d @ d)
    share = share * ((along >= 0.0) & (along <= 1.0))
    entering = (u @ n) > 0
    return GateCrossings(in_count=float((m * share)[entering].sum()),
                         out_count=float((m * share)[~entering & ((u @ n) < 0)].sum()))


def _overlap(s: np.ndarray, size: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """Share of each sub-sample, spread evenly over ``size`` metres around ``s``, lying in [lo, hi]:
    point masses would be counted whole or not at all, biasing a window a few cells wide."""
    left, right = s - size / 2, s + size / 2
    return np.clip((np.minimum(right, hi) - np.maximum(left, lo)) / size, 0.0, 1.0)


def _ground_motion(density: np.ndarray, cell: int, velocity: np.ndarray, image_to_ground: np.ndarray,
                   body: BodyMotion | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ground positions, ground velocities m/s, masses, ground steps) of sub-samples of the non-empty
    cells; the steps (N, 2, 2) are the ground vectors of one sub-sample's image sides."""
    cols = density.shape[1]
    mass = density.astype(np.float64).ravel() / SWEPT_SUBSAMPLES**2
    keep = np.flatnonzero(mass != 0)
    r, c = np.divmod(keep, cols)
    offsets = (np.arange(SWEPT_SUBSAMPLES) + 0.5) / SWEPT_SUBSAMPLES
    ox, oy = np.meshgrid(offsets, offsets)
    xs = ((c[:, None] + ox.ravel()[None, :]) * cell).ravel()
    ys = ((r[:, None] + oy.ravel()[None, :]) * cell).ravel()
    m = np.repeat(mass[keep], SWEPT_SUBSAMPLES**2)
    if keep.size == 0:
        return np.zeros((0, 2)), np.zeros((0, 2)), m, np.zeros((0, 2, 2))
    v = _velocity_at(velocity, xs, ys, cell, body)
    image = np.column_stack([xs, ys])
    ground = apply(image_to_ground, image)
    jac = homography_jacobian(image_to_ground, image)
    u = np.einsum("nij,nj->ni", jac, v)
    steps = jac * (cell / SWEPT_SUBSAMPLES)
    ok = np.all(np.isfinite(ground), axis=1) & np.all(np.isfinite(u), axis=1) & \
        np.all(np.isfinite(steps), axis=(1, 2))
    return ground[ok], u[ok], m[ok], steps[ok]


def _extent(steps: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Width across the line of a sub-sample's ground patch, as an even spread of the same variance:
    a cell far away is long along the view and thin across it, so no single size fits both."""
    across = steps.transpose(0, 2, 1) @ normal  # (N, 2): each image side's step across the line
    return np.maximum(np.hypot(across[:, 0], across[:, 1]), 1e-6)


def band_crossings(density: np.ndarray, cell: int, velocity: np.ndarray, ground_to_image: np.ndarray,
                   a: tuple[float, float], b: tuple[float, float], in_normal: tuple[float, float],
                   period_s: float, half_width_m: float, body: BodyMotion | None = None,
                   exit_side: bool = True, lines: int | None = None) -> GateCrossings:
    """People crossing the ground segment a→b in the period, from the flux through a band of lines.

    The flux through copies of a→b moved across it, averaged: on the side each way
    leaves to, 0 to 2 x ``half_width_m`` beyond the line (``exit_side``), else within
    ``half_width_m`` either side. Each person adds to it for as long as they are in the band, so
    a sample every ``period_s`` sees everyone who crosses when the band is deeper than a period's
    walk, where a snapshot of the flux through the line alone sees only those on the line at the
    sample. On the exit side, flow is a stream leaving the gate; before it, a crowd converging
    on a narrow gate crosses the band's copies beyond the gate's ends and is lost.

    There are ``lines`` copies per side where given, else one per density cell the band spans
    in the image (``BAND_LINES`` at least): the copies sample the band's mass, and where they are
    spaced wider than the map's cells, how much of a person's blur falls on a copy shifts with
    the sampling phase, a noise as large as the sampling's own (docs/sites.md, Gates).

    Only copies the camera sees count: a copy whose share inside the image (``velocity``'s size)
    is under ``BAND_MIN_VIEW_SHARE`` of the passage's own reads the image border's pixels for the
    rest, and nobody beyond it. Each way's flux is averaged over its copies that count; so a band
    cut by the image's edge is a shallower band, still unbiased (each walker is in it for a
    shorter time and weighs more when sampled), where zeros averaged in would under-read. With
    no copy left on a side, that way is read on the passage itself.

    Linear in density x velocity (each line by ``line_flux``), it stays unbiased where velocity
    is a local average mixing walkers with people standing beside them. ``ground_to_image`` maps
    ground metres to the density's image plane (``GroundMap.ground_to_image``).
    """
    if period_s <= 0 or half_width_m <= 0:
        raise ValueError("the sampling period and the band's half-width must be positive")
    band = GateBand(ground_to_image, cell, density.shape[:2], velocity.shape[:2], a, b, in_normal,
                    half_width_m, body, exit_side, lines)
    return band.crossings(density, velocity, period_s)


class GateBand:
    """``band_crossings`` for one passage and band, with everything that does not change between
    frames (the copies, which of them the camera sees, where each reads the maps) worked out once:
    a live camera reads the same band every frame, so only the reads are left per frame.
    """

    def __init__(self, ground_to_image: np.ndarray, cell: int, density_shape: tuple[int, int],
                 velocity_shape: tuple[int, int], a: tuple[float, float], b: tuple[float, float],
                 in_normal: tuple[float, float], half_width_m: float, body: BodyMotion | None = None,
                 exit_side: bool = True, lines: int | None = None) -> None:
        if half_width_m <= 0:
            raise ValueError("the band's half-width must be positive")
        pa, pb, n = np.asarray(a, float), np.asarray(b, float), np.asarray(in_normal, float)
        if lines is None:
            spanned = _cells_spanned(ground_to_image, (pa + pb) / 2, n, half_width_m, cell, exit_side)
            lines = max(BAND_LINES, spanned)
        fractions = (np.arange(lines) + 0.5) / lines
        if exit_side:
            offsets = [(f * 2 * half_width_m, True) for f in fractions] + \
                [(-f * 2 * half_width_m, False) for f in fractions]
        else:
            offsets = [((2 * f - 1) * half_width_m, None) for f in fractions]
        size = (velocity_shape[1], velocity_shape[0])
        copies = _copies(ground_to_image, pa, pb, n, np.array([0.0] + [o for o, _ in offsets]), size)
        own = copies[0]
        least = BAND_MIN_VIEW_SHARE * (own.share if own is not None else 0.0)
        # decided before any flux is read: a copy out of view costs no sampling
        used = [(copy, way) for copy, (_, way) in zip(copies[1:], offsets, strict=True)
                if copy is not None and copy.share >= least and copy.share > 0.0]
        # which way each copy read counts towards: (in, out), and how many count each way
        self._ways = np.array([[way is None or way, way is None or not way] for _, way in used],
                              float).reshape(-1, 2)
        read = [copy for copy, _ in used]
        counted = self._ways.sum(axis=0)
        # With no copy of a side in view, that way is read on the passage itself.
        self._own = own is not None and bool(np.any(counted == 0))
        if self._own and own is not None:
            read.append(own)
        self._used = counted
        self._in_first = np.array([c.in_is_positive for c in read], bool)
        self._reader = SegmentReader(np.array([c.ends for c in read]).reshape(-1, 2, 2), cell,
                                     density_shape, velocity_shape, body=body) if read else None

    def crossings(self, density: np.ndarray, velocity: np.ndarray, period_s: float) -> GateCrossings:
        """People crossing in the period, by way, from this frame's density and velocity."""
        if period_s <= 0:
            raise ValueError("the sampling period must be positive")
        if self._reader is None:
            return GateCrossings(0.0, 0.0)
        fluxes = self._reader.fluxes(density, velocity)
        # (in, out) per copy: "in" is the positive side where the copy says so
        ways = np.where(self._in_first[:, None], fluxes, fluxes[:, ::-1])
        k = len(self._ways)
        flux = (ways[:k] * self._ways).sum(axis=0)
        used = self._used.copy()
        if self._own:
            empty = used == 0
            flux[empty], used[empty] = ways[-1][empty], 1
        return GateCrossings(in_count=float(flux[0]) * period_s / max(used[0], 1),
                             out_count=float(flux[1]) * period_s / max(used[1], 1))


@dataclass(frozen=True)
class _Copy:
    """A copy of the passage in the image: its ends, which way is "in", its share inside the image."""

    ends: np.ndarray
    in_is_positive: bool
    share: float


def _copies(ground_to_image: np.ndarray, pa: np.ndarray, pb: np.ndarray, n: np.ndarray,
            offsets: np.ndarray, size: tuple[int, int]) -> list[_Copy | None]:
    """The passage moved each of ``offsets`` metres along ``n``, in the image of ``size`` (all mapped
    in one call); None for a copy that leaves the view's plane or is under a pixel long."""
    shift = offsets[:, None] * n
    centre = (pa + pb) / 2 + shift
    points = apply(ground_to_image, np.stack([pa + shift, pb + shift, centre, centre + 0.05 * n], axis=1))
    copies: list[_Copy | None] = []
    for ends, mid in zip(points[:, :2], points[:, 2:], strict=True):
        if not (np.all(np.isfinite(ends)) and np.all(np.isfinite(mid))):
            copies.append(None)
            continue
        dx, dy = ends[1] - ends[0]
        if float(np.hypot(dx, dy)) < 1.0:
            copies.append(None)
            continue
        in_is_positive = float(np.dot(mid[1] - mid[0], [dy, -dx])) > 0
        copies.append(_Copy(ends, in_is_positive, _share_in_image(ends[0], ends[1], size)))
    return copies


def _share_in_image(p0: np.ndarray, p1: np.ndarray, size: tuple[int, int]) -> float:
    """Share of the image segment p0→p1 inside the image of ``size`` (w, h) (Liang-Barsky clipping)."""
    lo, hi = 0.0, 1.0
    d = p1 - p0
    for axis, limit in ((0, size[0]), (1, size[1])):
        for q_dir, q in ((-d[axis], p0[axis]), (d[axis], limit - p0[axis])):
            if q_dir == 0:
                if q < 0:
                    return 0.0
                continue
            t = q / q_dir
            if q_dir < 0:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
    return max(hi - lo, 0.0)


def _cells_spanned(ground_to_image: np.ndarray, centre: np.ndarray, normal: np.ndarray, half_width_m: float,
                   cell: int, exit_side: bool) -> int:
    """Density cells the band's depth spans in the image on its longer side (0 where it leaves the
    view's plane): how many copies sample every cell the band covers."""
    depth = 2 * half_width_m
    ends = [(0.0, depth), (0.0, -depth)] if exit_side else [(-half_width_m, half_width_m)]
    most = 0.0
    for near, far in ends:
        px = apply(ground_to_image, np.array([centre + near * normal, centre + far * normal]))
        if np.all(np.isfinite(px)):
            most = max(most, float(np.hypot(*(px[1] - px[0]))))
    return int(np.ceil(most / cell))


def band_box(ground_to_image: np.ndarray, a: tuple[float, float], b: tuple[float, float],
             in_normal: tuple[float, float], half_width_m: float, image_size: tuple[int, int],
             reach_px: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
             margin_px: int = 24) -> tuple[int, int, int, int]:
    """The image box (x0, y0, x1, y1) holding every point ``band_crossings`` reads velocity at.

    Its band lies within 2 x ``half_width_m`` of a→b on either side; ``reach_px`` (left, up, right,
    down) widens the box by how far from a head the velocity is read (``BodyMotion.offset_px``),
    ``margin_px`` by the context optical flow needs around the points it is asked about. Reads
    clamp to the image's border, so the box is clipped to it. Computing flow only in this box is
    where the line needs it; elsewhere nobody reads it.
    """
    pa, pb, n = np.asarray(a, float), np.asarray(b, float), np.asarray(in_normal, float)
    d = 2.0 * half_width_m
    corners = apply(ground_to_image, np.array([pa - d * n, pa + d * n, pb - d * n, pb + d * n]))
    w, h = image_size
    if not np.all(np.isfinite(corners)):
        return 0, 0, w, h
    left, up, right, down = reach_px
    x0 = int(np.floor(corners[:, 0].min() - left)) - margin_px
    y0 = int(np.floor(corners[:, 1].min() - up)) - margin_px
    x1 = int(np.ceil(corners[:, 0].max() + right)) + margin_px
    y1 = int(np.ceil(corners[:, 1].max() + down)) + margin_px
    return max(x0, 0), max(y0, 0), min(max(x1, 1), w), min(max(y1, 1), h)


def flow_in_box(flow: Callable[[np.ndarray, np.ndarray, float], np.ndarray], prev_bgr: np.ndarray,
                next_bgr: np.ndarray, dt_s: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """Velocity (H, W, 2) px/s of the whole frame with ``flow`` computed only inside ``box`` (zero
    outside), at the resolution ``optical_flow`` would use for the whole frame (``FLOW_MAX_SIDE``)."""
    h, w = prev_bgr.shape[:2]
    x0, y0, x1, y1 = box
    velocity = np.zeros((h, w, 2), np.float32)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return velocity
    a, b = prev_bgr[y0:y1, x0:x1], next_bgr[y0:y1, x0:x1]
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    if scale < 1.0:  # the box at the frame's flow resolution, so its velocities match the whole frame's
        size = (max(round((x1 - x0) * scale), 8), max(round((y1 - y0) * scale), 8))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    part = flow(a, b, dt_s)
    if scale < 1.0:
        part = cv2.resize(part.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) / scale
    velocity[y0:y1, x0:x1] = part
    return velocity
