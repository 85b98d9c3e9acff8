"""The site map (zones, lines, camera footprints), who am I, and the admin-only reload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from crowdsafe.api.auth import Principal, admin, viewer
from crowdsafe.api.context import api_state
from crowdsafe.config.site import SiteError

router = APIRouter(prefix="/api", tags=["site"])


@router.get("/site", summary="Site geometry for the map")
def get_site(request: Request, _: Annotated[Principal, Depends(viewer)]) -> dict[str, Any]:
    """Zones (polygons in metres, capacity, LoS bands), lines, camera footprints and zone outlines in
    each camera's image (pixels), so the dashboard can draw both the map and the camera views."""
    return api_state(request).site_view.payload


@router.get("/me", summary="The calling token's name and role")
def me(principal: Annotated[Principal, Depends(viewer)]) -> dict[str, str]:
    return {"name": principal.name, "role": principal.role}


@router.post("/site/reload", summary="Re-read the site file (admin)")
def reload_site(request: Request, principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
    """Applies to what the API shows (names, capacities, polygons); a runner in another process keeps
    the site it started with until restarted. An invalid file changes nothing and says why."""
    try:
        view = api_state(request).reload_site()
    except (SiteError, FileNotFoundError, OSError) as exc:
        problems = exc.problems if isinstance(exc, SiteError) else [str(exc)]
        raise HTTPException(422, {"problems": problems}) from None
    return {"reloaded": True, "by": principal.name, "zones": len(view.zone_ids), "lines": len(view.line_ids),
            "cameras": len(view.camera_ids)}
