"""Alerts list and acknowledgement (operators and admins)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from crowdsafe.api import queries, shape
from crowdsafe.api.auth import Principal, operator, viewer
from crowdsafe.api.context import api_state

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(max_length=64)]


@router.get("", summary="Alerts, newest first")
def list_alerts(request: Request, _: Annotated[Principal, Depends(viewer)],
                state: Annotated[Literal["raised", "acknowledged", "cleared"] | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1_000)] = 200) -> list[dict[str, Any]]:
    return [shape.alert(a) for a in queries.alert_list(api_state(request).store, state, limit)]


@router.post("/{alert_id}/acknowledge", summary="Acknowledge a raised alert (operator)",
             responses={404: {}, 409: {"description": "not in state raised"}})
def acknowledge(request: Request, alert_id: AlertId,
                principal: Annotated[Principal, Depends(operator)]) -> dict[str, Any]:
    """Recorded with the token's name, so the log says who took responsibility."""
    store = api_state(request).store
    if not store.acknowledge(alert_id, by=principal.name, ts=time.time()):
        current = queries.alert(store, alert_id)
        if current is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert is {current['state']}, not raised")
    updated = queries.alert(store, alert_id)
    assert updated is not None
    return shape.alert(updated)
