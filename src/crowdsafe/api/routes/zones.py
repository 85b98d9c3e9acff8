"""Latest reading per configured zone, and bucketed history for the charts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

import crowdsafe.api.shape as shape
import crowdsafe.store.queries as queries
from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import api_state
from crowdsafe.api.params import TimeRange, time_range

router = APIRouter(prefix="/api/zones", tags=["zones"])
ZoneId = Annotated[str, Path(max_length=128)]


@router.get("", summary="Latest reading of every zone")
def zones(request: Request, _: Annotated[Principal, Depends(viewer)]) -> list[dict[str, Any]]:
    """Every configured zone, with ``reading: null`` until one is stored. Readings for zone ids not in
    the site file are not shown: the site file is what operators agreed to watch."""
    state = api_state(request)
    view = state.site_view
    rows = queries.latest_rows(state, "zone_readings")
    latest = {r["zone_id"]: r for r in rows if r["zone_id"] in view.zone_ids}
    now = time.time()
    return [{**info, "reading": shape.zone_reading(view, latest[info["id"]], now) if info["id"] in latest
             else None} for info in view.payload["zones"]]


@router.get("/{zone_id}/history", summary="Zone count and density per time bucket")
def zone_history(request: Request, zone_id: ZoneId, _: Annotated[Principal, Depends(viewer)],
                 span: Annotated[TimeRange, Depends(time_range)]) -> dict[str, Any]:
    state = api_state(request)
    view = state.site_view
    if zone_id not in view.zone_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such zone")
    args = ("zone_readings", zone_id)
    counts = state.store.history(*args, "count", span.start, span.end, span.resolution_s)
    density = {b: mean for b, mean, _lo, _hi in
               state.store.history(*args, "density", span.start, span.end, span.resolution_s)}
    info = view.zone_info(zone_id)
    return {
        "zone_id": zone_id, "start": span.start, "end": span.end, "resolution_s": span.resolution_s,
        "capacity": info["capacity"], "area_m2": info["area_m2"], "los_bands": info["los_bands"],
        "risk_bands": view.payload["risk_bands"],
        "points": [{"ts": b, "count": round(mean, 2), "count_min": round(lo, 2), "count_max": round(hi, 2),
                    "density": None if b not in density else round(density[b], 4)}
                   for b, mean, lo, hi in counts],
    }
