"""Camera health and the people-free background image of each camera."""

from __future__ import annotations

import json
import time
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import FileResponse

import crowdsafe.api.shape as shape
from crowdsafe.api.auth import Principal, operator, viewer
from crowdsafe.api.context import api_state

router = APIRouter(prefix="/api/cameras", tags=["cameras"])
CameraId = Annotated[str, Path(max_length=128)]


NO_NOTE = "no runner has reported on it yet"


def background_note(folder: FilePath, camera_id: str) -> str:
    """The runner's note on the camera's picture (``backgrounds/<camera>.json``): published, or why not."""
    try:
        note = json.loads((folder / f"{camera_id}.json").read_text()).get("note")
    except (OSError, ValueError, AttributeError):
        return NO_NOTE
    return note if isinstance(note, str) else NO_NOTE


@router.get("", summary="Latest health of every camera")
def cameras(request: Request, _: Annotated[Principal, Depends(viewer)]) -> list[dict[str, Any]]:
    state = api_state(request)
    view = state.site_view
    latest = {r["camera_id"]: r for r in state.store.latest("camera_health")
              if r["camera_id"] in view.camera_ids}
    folder = state.settings.backgrounds_dir
    now = time.time()
    return [{**info, "has_background": (folder / f"{info['id']}.jpg").is_file(),
             "background_note": background_note(folder, info["id"]),
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
        note = background_note(state.settings.backgrounds_dir, camera_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no background published: {note}")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.post("/{camera_id}/background/capture", summary="Capture the background density now (operator)",
             responses={409: {}, 503: {}})
def capture_background(request: Request, camera_id: CameraId,
                       _: Annotated[Principal, Depends(operator)]) -> dict[str, Any]:
    """For an operator who sees the site is empty: the camera's latest density becomes the
    background subtracted from its counts from now on (no picture is taken or kept). Refused (409)
    when the latest frame holds a crowd anywhere, so a waiting crowd cannot be captured as empty."""
    state = api_state(request)
    if camera_id not in state.site_view.camera_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such camera")
    capture = state.settings.capture_background
    if capture is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "no runner in this process counts this camera")
    result = capture(camera_id)
    if result is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "not captured: the camera has no frame yet, or its latest frame holds a crowd "
                            "somewhere (capture only while empty)")
    return {"camera_id": camera_id, "captured": True, "status": result}
