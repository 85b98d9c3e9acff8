"""The Setup page's routes (admin only): read the site file, and save an edited site into it.

A save is the whole site as JSON plus the version (SHA-256) of the file text it was based on. It
is checked as ``crowdsafe site check`` checks a file (same field-named problems, as 422), merged
into the file so its comments and key order stay (``config.site_edit``), written after the previous
file is kept as a numbered backup, and the running site is reloaded with the existing reload: the
readings are in the store and are untouched. A save based on an older version is refused (409)
with what changed since, so two admins editing at once never overwrite each other silently.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, TypeVar

import cv2
import numpy as np
import shapely
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crowdsafe.api.auth import Principal, admin
from crowdsafe.api.bodies import model_body
from crowdsafe.api.context import api_state
from crowdsafe.config.site import Site, SiteError
from crowdsafe.config.site_edit import (
    changes,
    merged_text,
    oversized,
    plain,
    read_tree,
    unsafe_paths,
    validate,
    version_of,
    write_with_backup,
)
from crowdsafe.geometry.homography import CalibrationError, apply, fit_homography
from crowdsafe.geometry.lines import plan_line
from crowdsafe.geometry.pose import plane_homography, pose_from_homography
from crowdsafe.geometry.site import SiteGeometry, build_site_geometry

router = APIRouter(prefix="/api/setup", tags=["setup"])
_lock = threading.Lock()
#: Versions this process has served or written, so a refused save can say what changed since.
_seen: OrderedDict[str, Any] = OrderedDict()
SEEN_VERSIONS = 32
B = TypeVar("B", bound=BaseModel)


class SiteSave(BaseModel):
    """An edited site and the version of the file it was edited from."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(pattern=r"^[0-9a-f]{64}$", description="`version` from GET /api/setup/site")
    site: dict[str, Any] = Field(description="the whole site, as `crowdsafe site schema` describes it")


def _remember(version: str, data: Any) -> None:
    _seen[version] = data
    _seen.move_to_end(version)
    while len(_seen) > SEEN_VERSIONS:
        _seen.popitem(last=False)


def _read(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HTTPException(500, f"site file: cannot read ({exc})") from None
    try:
        data = plain(read_tree(text))
    except SiteError as exc:
        raise HTTPException(422, {"problems": exc.problems}) from None
    return text, data


def _problems(exc: SiteError) -> HTTPException:
    return HTTPException(422, {"problems": exc.problems,
                               "detail": [{"loc": ["body", "site"], "msg": p, "type": "site"}
                                          for p in exc.problems]})


@router.get("/site", summary="The site file as the Setup page edits it (admin)")
def read_site(request: Request, _: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    """The file's text, its version (send it back when saving) and its content as JSON."""
    path = api_state(request).settings.site_file
    with _lock:
        text, data = _read(path)
        version = version_of(text)
        _remember(version, data)
    return {"version": version, "file": path.name, "yaml": text, "site": data}


def _parsed(raw: bytes, model: type[B]) -> B:
    """The body as ``model``; not JSON at all, or nested too deep: a 422 naming the body, as a
    wrong field gets."""
    try:
        return model_body(raw, model)
    except HTTPException as exc:
        if exc.status_code != 400:
            raise
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc.detail), "type": "body"}]) from None


def _checked(edited: dict[str, Any], path: Path, current: Any) -> tuple[Site, SiteGeometry]:
    """The edited site checked as a save checks it (size, file paths, schema, geometry): 422 else."""
    problems = oversized(edited) or unsafe_paths(edited, current)
    if problems:
        raise _problems(SiteError(problems))
    try:
        site = validate(edited, str(path), path.resolve().parent)
        return site, build_site_geometry(site)
    except SiteError as exc:
        raise _problems(exc) from None
    except ValueError as exc:  # a geometry the fit cannot use, said in words
        raise _problems(SiteError([str(exc)])) from None


@router.post("/site", summary="Save the edited site into the site file and reload it (admin)",
             responses={409: {"description": "the file changed since it was loaded"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": SiteSave.model_json_schema()}}}})
async def save_site(request: Request, principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    body = _parsed(await request.body(), SiteSave)
    state = api_state(request)
    path = state.settings.site_file
    with _lock:
        text, current = _read(path)
        now = version_of(text)
        if body.version != now:
            base = _seen.get(body.version)
            what = changes(base, current) if base is not None else \
                ["the file changed since this page loaded it (that version is no longer known)"]
            raise HTTPException(409, {"detail": "site: changed by someone else since you loaded it; reload "
                                                "the Setup page and make your edit again",
                                      "version": now, "changed": what})
        site, _ = _checked(body.site, path, current)
        new_text = merged_text(text, body.site)
        if new_text == text:
            return {"saved": False, "version": now, "backup": None, "changed": []}
        try:  # what is written must read back as what was checked
            check = validate(plain(read_tree(new_text)), str(path), path.resolve().parent)
        except SiteError as exc:
            raise _problems(exc) from None
        if check.model_dump() != site.model_dump():
            raise HTTPException(500, "site: the merged file does not read back as the edited site; "
                                     "nothing was written")
        try:
            backup = write_with_backup(path, new_text)
        except OSError as exc:
            raise HTTPException(500, f"site file: cannot write ({exc.strerror or exc}); nothing changed") \
                from None
        version = version_of(new_text)
        _remember(version, plain(read_tree(new_text)))
        what = changes(current, body.site)
        try:
            view = state.reload_site()
        except (SiteError, OSError) as exc:  # written and valid, so only a race with a hand edit gets here
            raise HTTPException(409, {"detail": f"saved, but the reload failed: {exc}", "version": version}) \
                from None
    return {"saved": True, "by": principal.name, "version": version, "backup": backup.name,
            "changed": what, "zones": len(view.zone_ids), "lines": len(view.line_ids),
            "cameras": len(view.camera_ids)}


Point = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)]


class FitBody(BaseModel):
    """Point pairs clicked so far, for a live fit while calibrating."""

    model_config = ConfigDict(extra="forbid")
    image_points: list[Point] = Field(max_length=200)
    ground_points: list[Point] = Field(max_length=200)
    image_size: tuple[Annotated[int, Field(gt=0, le=20_000)], Annotated[int, Field(gt=0, le=20_000)]]
    focal_px: float | None = Field(None, gt=0, allow_inf_nan=False)
    principal_point: Point | None = None
    head_height_m: float = Field(1.7, ge=0, le=3.0)
    outlines: list[Annotated[list[Point], Field(min_length=2, max_length=200)]] = Field(
        [], max_length=50, description="zone polygons and lines on the ground (metres) to draw into "
                                        "the image, at the floor and at head height")


def _polylines(matrix: np.ndarray, lines: list[np.ndarray], size: tuple[int, int]) -> list[list[list[float]]]:
    """Ground lines mapped into the image, split where they pass behind the horizon or far outside."""
    out = []
    w, h = size
    for line in lines:
        pts = apply(matrix, line)
        ok = np.all(np.isfinite(pts), axis=1) & (pts[:, 0] > -w) & (pts[:, 0] < 2 * w) \
            & (pts[:, 1] > -h) & (pts[:, 1] < 2 * h)
        run: list[list[float]] = []
        for p, good in zip(pts, ok, strict=True):
            if good:
                run.append([round(float(p[0]), 1), round(float(p[1]), 1)])
            elif run:
                if len(run) > 1:
                    out.append(run)
                run = []
        if len(run) > 1:
            out.append(run)
    return out


def _densified(points: np.ndarray, closed: bool, step_m: float = 1.0) -> np.ndarray:
    """Points every ``step_m`` along the outline: a straight ground edge is curved in a distorted
    or horizon-clipped view only if it is sampled."""
    ring = np.vstack([points, points[:1]]) if closed else points
    out = []
    for a, b in pairwise(ring):
        n = max(2, min(20, int(np.ceil(np.linalg.norm(b - a) / step_m)) + 1))
        out.append(np.linspace(a, b, n)[:-1])
    out.append(ring[-1:])
    return np.vstack(out)


@router.post("/fit", summary="Fit a camera's calibration from clicked pairs (admin)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": FitBody.model_json_schema()}}}})
async def fit(request: Request, _: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    """The fit ``crowdsafe calibrate`` reports (RMS and each pair's error in metres on the ground),
    and the 1 m floor grid and head-height grid drawn into the image, so a bad pair shows at once."""
    body = _parsed(await request.body(), FitBody)
    if len(body.image_points) != len(body.ground_points):
        raise HTTPException(422, [{"loc": ["body", "ground_points"], "type": "value_error",
                                   "msg": "one ground point per image point"}])
    try:
        result = fit_homography(body.image_points, body.ground_points)
    except CalibrationError as exc:
        raise HTTPException(422, [{"loc": ["body", exc.field], "msg": str(exc), "type": "calibration"}]) \
            from None
    gnd = result.ground_points
    lo = np.floor(gnd.min(axis=0)) - 10
    hi = np.ceil(gnd.max(axis=0)) + 10
    xs, ys = np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1)
    lines = [np.column_stack([np.full(200, x), np.linspace(lo[1], hi[1], 200)]) for x in xs] + \
            [np.column_stack([np.linspace(lo[0], hi[0], 200), np.full(200, y)]) for y in ys]
    size = (int(body.image_size[0]), int(body.image_size[1]))
    floor = _polylines(result.inverse, lines, size)
    head: list[list[list[float]]] = []
    head_matrix: np.ndarray | None = None
    pose = pose_from_homography(result.matrix, size, focal_px=body.focal_px,
                                principal_point=tuple(body.principal_point) if body.principal_point else None)
    if pose is not None and body.head_height_m > 0:
        to_plane = plane_homography(pose, result.matrix, body.head_height_m)
        inv = np.linalg.inv(to_plane)
        head_matrix = inv / np.abs(inv[2]).max()
        head = _polylines(head_matrix, lines, size)
    outlines = [_densified(np.asarray(o, dtype=np.float64), closed=len(o) > 2) for o in body.outlines]
    floor_outlines = [_polylines(result.inverse, [o], size) for o in outlines]
    head_outlines = [_polylines(head_matrix, [o], size) for o in outlines] if head_matrix is not None else []
    return {"floor_outlines": floor_outlines, "head_outlines": head_outlines,
            "rms_m": round(result.rms_m, 4), "max_m": round(result.max_m, 4),
            "errors_m": [round(float(e), 4) for e in result.errors_m],
            "inliers": [bool(i) for i in result.inliers],
            "camera_height_m": round(pose.height_m, 2) if pose is not None else None,
            "floor_grid": floor, "head_grid": head}


class PreviewBody(BaseModel):
    """The site as edited on the page, not saved yet."""

    model_config = ConfigDict(extra="forbid")
    site: dict[str, Any] = Field(description="the whole site, as `crowdsafe site schema` describes it")


def _rings(geom: Any) -> list[np.ndarray]:
    """Exterior rings of a (multi)polygon's parts, as arrays of ground points."""
    parts = getattr(geom, "geoms", [geom])
    return [np.asarray(p.exterior.coords) for p in parts if isinstance(p, shapely.Polygon) and not p.is_empty]


def _ground(rings: list[np.ndarray]) -> list[list[list[float]]]:
    return [[[round(float(x), 2), round(float(y), 2)] for x, y in r] for r in rings]


@router.post("/preview", summary="Where the edited zones and lines fall in every camera (admin)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": PreviewBody.model_json_schema()}}}})
async def preview(request: Request, _: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    """The edited site checked as a save checks it, then, per camera, the floor it owns (where cameras
    overlap, each spot of floor is counted by one camera only), each zone and line drawn into its
    image at the floor and at head height with the part it owns, and per gate the camera measuring
    it, its passage and its "in" direction: what the site will do, before it is saved."""
    body = _parsed(await request.body(), PreviewBody)
    path = api_state(request).settings.site_file
    with _lock:
        _, current = _read(path)
    site, geometry = _checked(body.site, path, current)
    cameras = []
    for cid, cg in geometry.cameras.items():
        size = cg.ground_map.image_size
        polys = cg.ground_map.cell_polygons()[cg.ownership >= 0.5]
        owned = shapely.simplify(shapely.coverage_union_all(polys), 0.05) if polys.size else shapely.Polygon()
        head = cg.ground_map.ground_to_image  # the plane the density is counted at (head height)
        items = []
        for outline, closed in [(z.polygon, True) for z in site.zones] + \
                [((ln.a, ln.b), False) for ln in site.lines]:
            pts = _densified(np.asarray(outline, dtype=np.float64), closed=closed)
            shape = shapely.Polygon(outline) if closed else shapely.LineString(outline)
            mine = shapely.intersection(shape, owned) if closed else shapely.Polygon()
            items.append({"floor": _polylines(cg.fit.inverse, [pts], size),
                          "head": _polylines(head, [pts], size),
                          "owned": [_polylines(cg.fit.inverse, [_densified(r[:-1], closed=True)], size)
                                    for r in _rings(mine)],
                          "owned_m2": round(float(mine.area), 1), "seen": bool(shape.intersects(owned))})
        cameras.append({"id": cid, "image_size": list(size), "owned": _ground(_rings(owned)),
                        "owned_m2": round(float(owned.area), 1),
                        "zones": {z.id: items[k] for k, z in enumerate(site.zones)},
                        "lines": {ln.id: items[len(site.zones) + k] for k, ln in enumerate(site.lines)}})
    lines = []
    for ln in site.lines:
        lp = plan_line(geometry, ln.id)
        lines.append({"id": ln.id, "camera": lp.camera_id if lp else None,
                      "passage": [list(p) for p in lp.passage] if lp else None,
                      "in_normal": [round(v, 4) for v in ln.positive_normal()],
                      "visible_fraction": round(lp.visible_fraction, 3) if lp else 0.0})
    return {"cameras": cameras, "lines": lines,
            "zones": {z.id: {cid: c["zones"][z.id]["owned_m2"] for cid, c in
                             zip(geometry.cameras, cameras, strict=True)} for z in site.zones}}


# -- the venue plan under the Setup page's ground plan -------------------------------------------------
#: A venue plan is a drawing: a few megabytes at most, and no side longer than a big poster scan.
VENUE_PLAN_MAX_BYTES = 8 * 1024 * 1024
VENUE_PLAN_MAX_SIDE = 12_000
VENUE_PLAN_DIR = "setup"
_KINDS = {"png": "image/png", "jpeg": "image/jpeg"}


def _image_header(raw: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from a PNG's or JPEG's header, read before anything is decoded: a small
    file may claim a picture of billions of pixels, and decoding it would take the memory first."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        return "png", int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(raw):
            if raw[i] != 0xFF:
                break
            marker = raw[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(raw[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                width, height = raw[i + 7:i + 9], raw[i + 5:i + 7]
                return "jpeg", int.from_bytes(width, "big"), int.from_bytes(height, "big")
            i += 2 + length
    raise ValueError("not a PNG or JPEG image")


def _venue_dir(request: Request) -> Path:
    return api_state(request).settings.state_dir / VENUE_PLAN_DIR


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VenuePlacement(BaseModel):
    """Where the venue plan lies on the ground: the ground point of its top-left corner and metres per
    image pixel (north, the plan's +y, is up: the image is not rotated)."""

    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=-100_000, le=100_000, allow_inf_nan=False)
    y: float = Field(ge=-100_000, le=100_000, allow_inf_nan=False)
    mpp: float = Field(gt=0, le=100, allow_inf_nan=False, description="metres per image pixel")


def _venue_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "venue-plan.json").read_text())
    except (OSError, ValueError):
        return None


@router.get("/venue-plan", summary="The venue plan under the ground plan: its size and placement (admin)")
def venue_plan(request: Request, _: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    meta = _venue_meta(_venue_dir(request))
    if meta is None:
        raise HTTPException(404, "no venue plan")
    return meta


@router.get("/venue-plan/image", summary="The venue plan image (admin)")
def venue_plan_image(request: Request, _: Annotated[Principal, Depends(admin)]) -> Response:
    folder = _venue_dir(request)
    meta = _venue_meta(folder)
    if meta is None or meta.get("kind") not in _KINDS:
        raise HTTPException(404, "no venue plan")
    try:
        data = (folder / f"venue-plan.{meta['kind']}").read_bytes()
    except OSError:
        raise HTTPException(404, "no venue plan") from None
    return Response(data, media_type=_KINDS[meta["kind"]], headers={"Cache-Control": "no-store"})


@router.post("/venue-plan/image", summary="Put a venue plan (PNG or JPEG) under the ground plan (admin)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/png": {"schema": {"type": "string", "format": "binary"}},
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
async def put_venue_plan_image(request: Request, principal: Annotated[Principal, Depends(admin)]
                               ) -> dict[str, Any]:
    """Checked before it is kept: a PNG or JPEG by its own header, at most 12,000 pixels a side, and
    decodable; it then replaces the previous plan, placed at 0.05 m a pixel with its top-left corner
    at (0, 0) until the page scales and moves it. It is shown to admins only, on the Setup page."""
    raw = await request.body()
    try:
        kind, width, height = _image_header(raw)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "image"}]) from None
    if not (0 < width <= VENUE_PLAN_MAX_SIDE and 0 < height <= VENUE_PLAN_MAX_SIDE):
        msg = f"image of {width} x {height} px: at most {VENUE_PLAN_MAX_SIDE} a side"
        raise HTTPException(422, [{"loc": ["body"], "type": "image", "msg": msg}])
    decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (height, width):
        raise HTTPException(422, [{"loc": ["body"], "msg": f"not a readable {kind.upper()} image",
                                   "type": "image"}])
    folder = _venue_dir(request)
    meta = {"kind": kind, "width": width, "height": height, "x": 0.0, "y": 0.0, "mpp": 0.05,
            "by": principal.name}
    with _lock:
        for old in folder.glob("venue-plan.*"):
            if old.suffix in (".png", ".jpeg"):
                old.unlink()
        _write_atomic(folder / f"venue-plan.{kind}", raw)
        _write_atomic(folder / "venue-plan.json", json.dumps(meta).encode())
    return meta


@router.post("/venue-plan", summary="Place the venue plan on the ground (admin)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": VenuePlacement.model_json_schema()}}}})
async def place_venue_plan(request: Request, principal: Annotated[Principal, Depends(admin)]
                           ) -> dict[str, Any]:
    body = _parsed(await request.body(), VenuePlacement)
    folder = _venue_dir(request)
    with _lock:
        meta = _venue_meta(folder)
        if meta is None:
            raise HTTPException(404, "no venue plan: put its image first")
        meta.update(body.model_dump(), by=principal.name)
        _write_atomic(folder / "venue-plan.json", json.dumps(meta).encode())
    return meta


@router.delete("/venue-plan", summary="Remove the venue plan (admin)")
def remove_venue_plan(request: Request, _: Annotated[Principal, Depends(admin)]) -> dict[str, bool]:
    with _lock:
        removed = False
        for old in _venue_dir(request).glob("venue-plan.*"):
            old.unlink()
            removed = True
    return {"removed": removed}
