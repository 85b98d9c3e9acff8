"""The Setup page's routes (admin only): read the site file, and save an edited site into it.

A save is the whole site as JSON plus the version (SHA-256) of the file text it was based on. It
is checked as ``crowdsafe site check`` checks a file (same field-named problems, as 422), merged
into the file so its comments and key order stay (``config.site_edit``), written after the previous
file is kept as a numbered backup, and the running site is reloaded with the existing reload: the
readings are in the store and are untouched. A save based on an older version is refused (409)
with what changed since, so two admins editing at once never overwrite each other silently.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from crowdsafe.api.auth import Principal, admin
from crowdsafe.api.bodies import model_body
from crowdsafe.api.context import api_state
from crowdsafe.config.site import SiteError
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
from crowdsafe.geometry.site import build_site_geometry

router = APIRouter(prefix="/api/setup", tags=["setup"])
_lock = threading.Lock()
#: Versions this process has served or written, so a refused save can say what changed since.
_seen: OrderedDict[str, Any] = OrderedDict()
SEEN_VERSIONS = 32


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


@router.post("/site", summary="Save the edited site into the site file and reload it (admin)")
async def save_site(request: Request, principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = model_body(raw, SiteSave)
    except HTTPException as exc:  # not JSON at all, or nested too deep: a 422 naming the body
        if exc.status_code != 400:
            raise
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc.detail), "type": "body"}]) from None
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
        problems = oversized(body.site) or unsafe_paths(body.site, current)
        if problems:
            raise HTTPException(422, {"problems": problems,
                                      "detail": [{"loc": ["body", "site"], "msg": p, "type": "site"}
                                                 for p in problems]})
        try:
            site = validate(body.site, str(path), path.resolve().parent)
            build_site_geometry(site)
        except SiteError as exc:
            raise _problems(exc) from None
        except ValueError as exc:  # a geometry the fit cannot use, said in words
            raise _problems(SiteError([str(exc)])) from None
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
