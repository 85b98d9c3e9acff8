"""Camera health and the people-free background image of each camera."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


def _audited(request: Request, principal: Principal, camera_id: str, action: str,
             act: Callable[[str], tuple[bool, str]] | None) -> tuple[bool, str]:
    """Run an operator's action on a camera's background and record it, done or refused, in the
    audit trail (the debrief lists it): who, when, what, and the camera's status or the reason."""
    state = api_state(request)
    if camera_id not in state.site_view.camera_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such camera")
    if act is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "no runner in this process counts this camera")
    done, detail = act(camera_id)
    state.store.record({"ts": time.time(), "actor": principal.name, "action": action, "subject": camera_id,
                        "outcome": "done" if done else "refused", "detail": detail})
    return done, detail


@router.post("/{camera_id}/background/capture", summary="Capture the background density now (operator)",
             responses={409: {}, 503: {}})
def capture_background(request: Request, camera_id: CameraId,
                       principal: Annotated[Principal, Depends(operator)]) -> dict[str, Any]:
    """For an operator who sees the site is empty: the camera's latest density becomes the
    background subtracted from its counts from now on (no picture is taken or kept). Refused (409,
    with the reason) unless the camera's last frames show nobody anywhere, by the counter or by
    motion; ``/background/undo`` restores the previous one. Both are in the audit trail."""
    done, detail = _audited(request, principal, camera_id, "background_capture",
                            api_state(request).settings.capture_background)
    if not done:
        raise HTTPException(status.HTTP_409_CONFLICT, f"not captured: {detail} (capture only while empty)")
    return {"camera_id": camera_id, "captured": True, "status": detail}


@router.post("/{camera_id}/background/undo", summary="Undo the last background capture (operator)",
             responses={409: {}, 503: {}})
def undo_background(request: Request, camera_id: CameraId,
                    principal: Annotated[Principal, Depends(operator)]) -> dict[str, Any]:
    """Restore the background the camera subtracted before its last capture (409 when there is none)."""
    done, detail = _audited(request, principal, camera_id, "background_undo",
                            api_state(request).settings.undo_background)
    if not done:
        raise HTTPException(status.HTTP_409_CONFLICT, f"not undone: {detail}")
    return {"camera_id": camera_id, "undone": True, "status": detail}
