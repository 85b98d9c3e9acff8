"""``crowdsafe site``: the site file's JSON Schema, and a check that says what the file describes.

``check`` does everything the pipeline will do at start-up (parse, validate, fit every camera,
map zones onto the cameras) so a bad site file fails here, with the field named, not at 3 am.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.config.site import Site, load_site, site_json_schema
from crowdsafe.counting.tuning import load_tuning
from crowdsafe.evaluation.site import FramePoints, folder_images, load_frame_points, parse_frames
from crowdsafe.geometry.lines import plan_line
from crowdsafe.geometry.site import SiteGeometry, build_site_geometry

app = typer.Typer(help="Validate a site file and print its JSON Schema.", no_args_is_help=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
#: Zone areas outside this range (m²) are almost surely a unit or coordinate mistake: the largest
#: festival sites are a few km², and a zone under 1 m² cannot hold a crowd worth measuring.
PLAUSIBLE_ZONE_M2 = (1.0, 5e6)


def area_warning(area_m2: float) -> str | None:
    """Why a zone's area looks wrong, or None: a typo in a coordinate must not pass silently."""
    lo, hi = PLAUSIBLE_ZONE_M2
    if area_m2 > hi:
        return (f"WARNING: {area_m2:.3g} m² is larger than any venue ({hi / 1e6:g} km²); "
                "are the polygon's coordinates metres on the ground?")
    if area_m2 < lo:
        return f"WARNING: {area_m2:.3g} m² is too small to hold a crowd; are the coordinates metres?"
    return None


def probe_size(source: str) -> tuple[int, int] | None:
    """(width, height) of a local image or video file without keeping the frame; None if unknown."""
    path = Path(source)
    if "://" in source or not path.is_file():
        return None
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if image is None else (image.shape[1], image.shape[0])
    cap = cv2.VideoCapture(str(path))
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return (w, h) if w > 0 and h > 0 else None


def site_geometry(site: Site) -> SiteGeometry:
    """Geometry for a site, reading frame sizes from local sources where the file omits them."""
    sizes = {}
    for cam in site.cameras:
        if cam.calibration.image_size is None and (size := probe_size(site.resolve_source(cam))):
            sizes[cam.id] = size
    return build_site_geometry(site, sizes)


def tuning_line(site: Site, name: str) -> str:
    """What a camera's tuning file sets (or that it is missing: the camera then counts untuned)."""
    path = site.resolve_path(name)
    if not path.is_file():
        return f"WARNING: tuning {name} not found; the camera counts untuned"
    t = load_tuning(path)
    layers = "" if t.layers is None else f" with its own output layer ({Path(t.layers.path).name}, verified)"
    return (f"tuned by {name}: {t.model}{layers}, background {'on' if t.background else 'off'}, gain "
            f"{t.gain:.3f}; cross-validated MAE {t.cv_mae:.2f}/frame on {len(t.frames)} annotated frames")


def annotated_camera(site_file: Path, camera: str, points: Path, frames: str | None,
                     source: str | None = None) -> tuple[Site, SiteGeometry, FramePoints, range, str]:
    """The site, its geometry, the annotated points per frame of ``camera``'s source, the
    ``--frames`` range and that source, for the commands that score or tune one camera; exit 2
    naming the site's cameras when ``camera`` is not one of them.

    ``source`` (a recording of the camera: a video file or an image folder) replaces the
    camera's own. Labels keyed by image file name place each name at its position in an image
    folder source (name order), so they index the same frames as labels keyed by frame index.
    """
    site = load_site(site_file)
    geometry = site_geometry(site)
    if camera not in geometry.cameras:
        raise fail(f"--camera {camera!r}: the site has {', '.join(geometry.cameras)}")
    video = source if source is not None else site.resolve_source(site.camera(camera))
    files = folder_images(video)
    truth = load_frame_points(points, None if files is None else [f.name for f in files])
    return site, geometry, truth, parse_frames(frames, truth), video


def summary_lines(geometry: SiteGeometry) -> list[str]:
    site = geometry.site
    book = site.safety.profile_book()
    lines = [f"site '{site.name}': {len(site.cameras)} camera(s), {len(site.zones)} zone(s), "
             f"{len(site.lines)} line(s) - OK"]
    for cam in site.cameras:
        cg = geometry.cameras[cam.id]
        gm, fit = cg.ground_map, cg.fit
        lo, hi = gm.m2_per_pixel_range()
        height = f", camera ~{gm.pose.height_m:.1f} m above the floor" if gm.pose is not None else ""
        if gm.plane_height_m > 0:
            height += f"; density mapped at head height {gm.plane_height_m:.2f} m"
        elif site.head_height_for(cam) > 0:
            height += ("; WARNING: pose unknown, density mapped at the FLOOR (accept_floor_mapping): people "
                       "land metres behind where they stand; give calibration.focal_px")
        else:
            height += "; density mapped at the floor (head_height_m 0)"
        lines.append(f"camera {cam.id}: {gm.image_size[0]}x{gm.image_size[1]}, model {cam.model}, every "
                     f"{cam.sampling.every}; fit {fit.n_inliers}/{len(fit.inliers)} inliers, reprojection "
                     f"RMS {fit.rms_m:.3f} m, max {fit.max_m:.3f} m; {100 * gm.valid.mean():.0f}% of cells "
                     "on "
                     f"usable floor, {lo * 1e4:.1f}-{hi * 1e4:.0f} cm²/pixel{height}")
        if cam.tuning:
            lines.append(f"camera {cam.id}: {tuning_line(site, cam.tuning)}")
    for zone in site.zones:
        zg = geometry.zones[zone.id]
        los = book.los_profile(zone.type, zone.los_profile).name
        cap = f", capacity {zone.capacity}" if zone.capacity is not None else ""
        exits = ", exits: " + ", ".join(f"{e.name} {e.width_m:g} m {e.kind}" for e in zone.exits) \
            if zone.exits else ""
        warns = ["WARNING: no camera sees it"] if zg.covered_m2 <= 0 else []
        if (odd := area_warning(zg.area_m2)) is not None:
            warns.append(odd)
        warn = "".join(f"  ({w})" for w in warns)
        area = f"{zg.area_m2:.1f}" if zg.area_m2 < 1e7 else f"{zg.area_m2:.3g}"
        lines.append(f"zone {zone.id} ({zone.label}): {zone.type}, {area} m², coverage "
                     f"{zg.coverage_pct:.1f}%{cap}, LoS profile {los}{exits}{warn}")
    for line in site.lines:
        nx, ny = line.positive_normal()
        width = line.width_m or line.length_m
        plan = plan_line(geometry, line.id)
        unseen = "  (WARNING: no camera sees it; no flow will be measured)" if plan is None else ""
        passage = ""
        if plan is not None:
            (px, py), (qx, qy) = plan.passage
            how = "drawn" if line.passage is not None else "automatic"
            passage = f", counted over a {np.hypot(qx - px, qy - py):.1f} m passage ({how})"
        lines.append(f"line {line.id}: {line.length_m:.1f} m long, width {width:.1f} m, 'in' moves "
                     f"towards ({nx:+.2f}, {ny:+.2f}){passage}{unseen}")
    lines.append(f"risk profile {book.risk.name}: " + ", ".join(
        f"{b.label} <{b.upper:g}" if b.upper != float("inf") else f"{b.label}" for b in book.risk.bands))
    warnings = sum(line.count("WARNING") for line in lines)
    if warnings:
        plural = "s" if warnings > 1 else ""
        lines[0] = lines[0].removesuffix(" - OK") + f" - OK, with {warnings} warning{plural}"
    return lines


@app.command("check")
def check(site_file: Annotated[Path, typer.Argument(help="Site YAML file.")]) -> None:
    """Validate a site file (schema, ids, polygons, calibrations) and print what it describes."""
    with user_errors():
        geometry = site_geometry(load_site(site_file))
    for line in summary_lines(geometry):
        typer.echo(line)


@app.command("schema")
def schema(out: Annotated[Path | None, typer.Option(help="Write the schema here instead of stdout.")] = None
           ) -> None:
    """Print the site file's JSON Schema (for editors and validation tools)."""
    text = json.dumps(site_json_schema(), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {out}")
