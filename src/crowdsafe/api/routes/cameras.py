"""Camera health and the people-free background image of each camera."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import FileResponse

from crowdsafe.api import shape
from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import api_state

router = APIRouter(prefix="/api/cameras", tags=["cameras"])
CameraId = Annotated[str, Path(max_length=128)]


@router.get("", summary="Latest health of every camera")
def cameras(request: Request, _: Annotated[Principal, Depends(viewer)]) -> list[dict[str, Any]]:
    state = api_state(request)
    view = state.site_view
    latest = {r["camera_id"]: r for r in state.store.latest("camera_health")
              if r["camera_id"] in view.camera_ids}
    folder = state.settings.backgrounds_dir
    now = time.time()
    return [{**info, "has_background": (folder / f"{info['id']}.jpg").is_file(),
             "health": shape.camera_health(latest[info["id"]], now) if info["id"] in latest else None}
            for info in view.payload["cameras"]]


@router.get("/{camera_id}/background.jpg", summary="People-free background (temporal median)",
            response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
def background(request: Request, camera_id: CameraId,
               _: Annotated[Principal, Depends(viewer)]) -> FileResponse:
    """The path is built only from an id that is a configured camera (ids are restricted to
    [A-Za-z0-9_.-] by the site schema and cannot start with '.'), so no request can name any other file."""
    state = api_state(request)
    if camera_id not in state.site_view.camera_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such camera")
    path = state.settings.backgrounds_dir / f"{camera_id}.jpg"
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no background published for this camera yet")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
