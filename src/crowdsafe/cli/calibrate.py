"""``crowdsafe calibrate``: how good is a camera's floor calibration, and does it look right?

Why and how: docs/design-notes.md, ``crowdsafe.cli.calibrate``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.cli.site import IMAGE_SUFFIXES
from crowdsafe.config.site import Site, SiteError, load_site
from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.lines import passage_of
from crowdsafe.geometry.site import CameraGeometry, SiteGeometry, build_site_geometry

GRID_COLOUR = (170, 170, 170)
GRID_MAJOR_COLOUR = (255, 255, 255)
ZONE_COLOURS = [(0, 200, 255), (255, 120, 0), (80, 220, 80), (220, 80, 220), (0, 90, 255), (255, 220, 0)]
LINE_COLOUR = (0, 0, 255)
POINT_COLOUR = (0, 255, 255)


def read_first_frame(path: str) -> np.ndarray:
    """First frame of a video, or an image; kept in memory only."""
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
    else:
        cap = cv2.VideoCapture(path)
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        frame = frame if ok else None
    if frame is None:
        raise FileNotFoundError(f"cannot read a frame from {path}")
    return frame


class _Projector:
    """Ground polylines → image polylines, cut where they leave the camera's usable floor.

    ``floor`` projects the floor itself; otherwise the points at the density plane's height
    above it (head height), as the counter sees people standing there.
    """

    def __init__(self, cg: CameraGeometry, floor: bool = True) -> None:
        self.cg = cg
        self.inverse = np.linalg.inv(cg.fit.matrix if floor else cg.ground_map.image_to_ground)

    def runs(self, ground: np.ndarray) -> list[np.ndarray]:
        image = apply(self.inverse, ground)
        _, _, ok = self.cg.ground_map.cell_of(image)
        out, start = [], None
        for i, good in enumerate([*ok.tolist(), False]):
            if good and start is None:
                start = i
            elif not good and start is not None:
                if i - start >= 2:
                    out.append(np.round(image[start:i]).astype(np.int32))
                start = None
        return out

    def point(self, xy: tuple[float, float]) -> tuple[int, int] | None:
        runs = self.runs(np.array([xy, xy], float))
        return tuple(int(v) for v in runs[0][0]) if runs else None  # type: ignore[return-value]


def _segment(a: np.ndarray, b: np.ndarray, step: float = 0.05) -> np.ndarray:
    n = max(int(np.ceil(np.hypot(*(b - a)) / step)), 2)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return a + t * (b - a)


def _dashed(image: np.ndarray, run: np.ndarray, colour: tuple[int, int, int], thickness: int,
            dash: int = 6) -> None:
    """A polyline drawn as dashes of ``dash`` points (0.3 m with 5 cm steps), gaps as long."""
    for start in range(0, len(run) - 1, 2 * dash):
        piece = run[start:start + dash + 1]
        if len(piece) >= 2:
            cv2.polylines(image, [piece], False, colour, thickness, cv2.LINE_AA)


def _label(image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int],
           scale: float = 0.45) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 3)
    at = (int(np.clip(at[0], 2, max(image.shape[1] - tw - 2, 2))),
          int(np.clip(at[1], th + 2, image.shape[0] - 4)))
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _grid_bounds(site: Site, cg: CameraGeometry, pad: float = 5.0) -> tuple[int, int, int, int]:
    """Ground box worth gridding: the calibration, zones and lines plus a margin, within view."""
    pts = [cg.fit.ground_points] + [np.asarray(z.polygon) for z in site.zones]
    pts += [np.array([ln.a, ln.b]) for ln in site.lines]
    allp = np.vstack(pts)
    lo, hi = allp.min(axis=0) - pad, allp.max(axis=0) + pad
    fx0, fy0, fx1, fy1 = cg.footprint.bounds
    x0, y0 = max(lo[0], fx0), max(lo[1], fy0)
    x1, y1 = min(hi[0], fx1), min(hi[1], fy1)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def draw_overlay(frame: np.ndarray, geometry: SiteGeometry, camera_id: str) -> np.ndarray:
    """The frame with the 1 m ground grid, zones, lines (with their passages) and calibration points."""
    site, cg = geometry.site, geometry.cameras[camera_id]
    gm = cg.ground_map
    proj = _Projector(cg)
    heads = _Projector(cg, floor=False) if gm.plane_height_m > 0 else None
    out = frame.copy()

    shade = np.zeros_like(out, dtype=np.float32)
    alpha = np.zeros(out.shape[:2], dtype=np.float32)
    for k, zone in enumerate(site.zones):
        cover = cg.zone_weights[zone.id]
        up = np.kron(cover, np.ones((gm.cell, gm.cell)))
        h, w = min(up.shape[0], out.shape[0]), min(up.shape[1], out.shape[1])
        shade[:h, :w] += up[:h, :w, None] * np.array(ZONE_COLOURS[k % len(ZONE_COLOURS)], np.float32)
        alpha[:h, :w] += up[:h, :w]
    a = 0.35 * np.clip(alpha, 0, 1)[..., None]
    colour = np.divide(shade, np.maximum(alpha, 1e-9)[..., None])
    out = (out * (1 - a) + colour * a).astype(np.uint8)

    x0, y0, x1, y1 = _grid_bounds(site, cg)
    for x in range(x0, x1 + 1):
        major = x % 5 == 0
        for run in proj.runs(_segment(np.array([x, y0], float), np.array([x, y1], float))):
            cv2.polylines(out, [run], False, GRID_MAJOR_COLOUR if major else GRID_COLOUR, 1,
                          cv2.LINE_AA)
    for y in range(y0, y1 + 1):
        major = y % 5 == 0
        for run in proj.runs(_segment(np.array([x0, y], float), np.array([x1, y], float))):
            cv2.polylines(out, [run], False, GRID_MAJOR_COLOUR if major else GRID_COLOUR, 1,
                          cv2.LINE_AA)
    for x in range(x0 - x0 % 5 + 5, x1, 5):
        for y in range(y0 - y0 % 5 + 5, y1, 5):
            if (p := proj.point((x, y))) is not None:
                _label(out, f"{x},{y}", (p[0] + 3, p[1] - 3), GRID_MAJOR_COLOUR, 0.35)

    for k, zone in enumerate(site.zones):
        colour = ZONE_COLOURS[k % len(ZONE_COLOURS)]
        ring = np.asarray([*zone.polygon, zone.polygon[0]], float)
        for a_, b_ in itertools.pairwise(ring):
            for run in proj.runs(_segment(a_, b_)):
                cv2.polylines(out, [run], False, colour, 2, cv2.LINE_AA)
            for run in heads.runs(_segment(a_, b_)) if heads is not None else []:
                _dashed(out, run, colour, 1)
        inside = geometry.zones[zone.id].polygon.intersection(cg.footprint)
        if not inside.is_empty and (p := proj.point(tuple(inside.representative_point().coords[0]))):
            _label(out, f"{zone.label} ({geometry.zones[zone.id].coverage_pct:.0f}% seen)", p, colour)

    for line in site.lines:
        a_, b_ = np.array(line.a, float), np.array(line.b, float)
        # The passage (where the gate's crossings are counted): thin, with ticks at its ends.
        pa, pb = passage_of(geometry, line, camera_id)
        for run in proj.runs(_segment(pa, pb)):
            cv2.polylines(out, [run], False, LINE_COLOUR, 1, cv2.LINE_AA)
        across = np.array(line.positive_normal()) * 0.25
        for end in (pa, pb):
            for run in proj.runs(_segment(end - across, end + across)):
                cv2.polylines(out, [run], False, LINE_COLOUR, 1, cv2.LINE_AA)
        for run in proj.runs(_segment(a_, b_)):
            cv2.polylines(out, [run], False, LINE_COLOUR, 3, cv2.LINE_AA)
        for run in heads.runs(_segment(a_, b_)) if heads is not None else []:
            _dashed(out, run, LINE_COLOUR, 2)
        mid = (a_ + b_) / 2
        tip = mid + np.array(line.positive_normal())
        pm, pt = proj.point(tuple(mid)), proj.point(tuple(tip))
        if pm and pt:
            cv2.arrowedLine(out, pm, pt, LINE_COLOUR, 2, cv2.LINE_AA, tipLength=0.3)
            _label(out, f"{line.name or line.id} (in)", (pt[0] + 4, pt[1]), LINE_COLOUR)

    back = apply(np.linalg.inv(cg.fit.matrix), cg.fit.ground_points)
    for i, (p, q) in enumerate(zip(cg.fit.image_points, back, strict=True)):
        pi = (round(p[0]), round(p[1]))
        cv2.circle(out, pi, 5, POINT_COLOUR, 1, cv2.LINE_AA)
        if np.all(np.isfinite(q)):
            cv2.drawMarker(out, (round(q[0]), round(q[1])), POINT_COLOUR, cv2.MARKER_CROSS, 8, 1)
        text = str(i) + ("" if cg.fit.inliers[i] else " outlier")
        _label(out, text, (pi[0] + 6, pi[1] - 6), POINT_COLOUR, 0.4)
    _label(out, f"{camera_id}: 1 m grid; RMS {cg.fit.rms_m:.2f} m, max {cg.fit.max_m:.2f} m",
           (8, 20), (255, 255, 255), 0.5)
    if heads is not None:
        _label(out, f"solid: on the floor; dashed: {gm.plane_height_m:.2f} m up, where heads are counted",
               (8, 40), (255, 255, 255), 0.45)
    return out


def calibrate(
    site_file: Annotated[Path, typer.Argument(help="Site YAML file.")],
    camera: Annotated[str | None, typer.Option(help="Camera id (optional when the site has one).")] = None,
    frame: Annotated[Path | None, typer.Option(help="Image or video to draw on (default: the camera's "
                                                    "source; a video's first frame).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the check image (PNG) here. Without it no frame "
                                                  "is written.")] = None,
) -> None:
    """Print a camera's calibration fit; with --out, draw the 1 m floor grid, zones and lines on a frame."""
    with user_errors():
        site = load_site(site_file)
        if camera is None:
            if len(site.cameras) != 1:
                raise fail(f"the site has {len(site.cameras)} cameras; choose one with --camera "
                           f"({', '.join(c.id for c in site.cameras)})")
            camera = site.cameras[0].id
        try:
            cam = site.camera(camera)
        except KeyError as exc:
            raise fail(str(exc.args[0])) from None
        image = read_first_frame(str(frame) if frame is not None else site.resolve_source(cam)) \
            if (out is not None or cam.calibration.image_size is None) else None
        size = cam.calibration.image_size
        if image is not None:
            frame_size = (image.shape[1], image.shape[0])
            if size is not None and tuple(size) != frame_size:
                index = site.cameras.index(cam)
                raise SiteError([f"cameras[{index}].calibration.image_size: {list(size)} but "
                                 f"the frame is {frame_size[0]}x{frame_size[1]}"], str(site_file))
            size = frame_size
        geometry = build_site_geometry(site, {cam.id: size} if size else None)
    cg = geometry.cameras[cam.id]
    fit, gm = cg.fit, cg.ground_map
    lo, hi = gm.m2_per_pixel_range()
    typer.echo(f"camera {cam.id}: {len(fit.inliers)} point pairs, {fit.n_inliers} inliers"
               + ("" if fit.n_inliers == len(fit.inliers) else
                  f" (outliers: {np.flatnonzero(~fit.inliers).tolist()})"))
    typer.echo(f"reprojection error on the ground: RMS {fit.rms_m:.3f} m, max {fit.max_m:.3f} m")
    for i, err in enumerate(fit.errors_m):
        typer.echo(f"  pair {i}: image {fit.image_points[i].tolist()} -> ground "
                   f"{fit.ground_points[i].tolist()}: "
                   f"{err:.3f} m{'' if fit.inliers[i] else ' (outlier)'}")
    typer.echo(f"ground per pixel: {lo * 1e4:.2f} to {hi * 1e4:.1f} cm² ({lo:.2e} to {hi:.2e} m²); "
               f"{100 * gm.valid.mean():.0f}% of density cells on usable floor")
    if gm.pose is not None:
        ph = gm.person_px[gm.valid]
        typer.echo(f"camera about {gm.pose.height_m:.1f} m above the floor, focal {gm.pose.K[0, 0]:.0f} px "
                   f"({'estimated' if gm.pose.focal_estimated else 'given'}); a 1.7 m person is "
                   f"{np.nanmin(ph):.0f}-{np.nanmax(ph):.0f} px tall")
        typer.echo(f"density mapped at head height, {gm.plane_height_m:.2f} m above the floor")
    else:
        typer.echo("camera pose unknown (focal length not determined): density is mapped at the FLOOR "
                   "(accept_floor_mapping), so people land metres behind where they stand; give "
                   "calibration.focal_px to place them at head height")
    if out is None:
        typer.echo("pass --out FILE.png to draw the 1 m grid, zones and lines on a frame for a visual check")
        return
    assert image is not None
    if not cv2.imwrite(str(out), draw_overlay(image, geometry, cam.id)):
        raise fail(f"cannot write {out} (use a .png name in an existing folder)")
    typer.echo(f"wrote {out}")
