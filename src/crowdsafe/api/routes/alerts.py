"""Alerts list and acknowledgement (operators and admins)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

import crowdsafe.api.shape as shape
import crowdsafe.store.queries as queries
from crowdsafe.api.auth import Principal, operator, viewer
from crowdsafe.api.bodies import model_body
from crowdsafe.api.context import api_state

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(max_length=64)]


class Acknowledgement(BaseModel):
    """Optional body of an acknowledgement: one click needs none, a note is there when it helps."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=500, description="What was done, e.g. 'stewards sent'")


async def acknowledgement(request: Request) -> Acknowledgement | None:
    """The optional body, read whatever its Content-Type: an empty body (the one-click case) or
    ``{}`` is no note; anything else must be ``{"note": "..."}``: 400 when the body is not acceptable
    JSON (any depth or encoding), 422 when it is JSON of another shape, each naming the problem."""
    raw = await request.body()
    if not raw.strip():
        return None
    return model_body(raw, Acknowledgement)


@router.get("", summary="Alerts, newest first")
def list_alerts(request: Request, _: Annotated[Principal, Depends(viewer)],
                state: Annotated[Literal["raised", "acknowledged", "cleared"] | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1_000)] = 200) -> list[dict[str, Any]]:
    return [shape.alert(a) for a in queries.alert_list(api_state(request).store, state, limit)]


@router.post("/{alert_id}/acknowledge", summary="Acknowledge a raised alert (operator)",
             responses={404: {}, 409: {"description": "not in state raised"}},
             openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                 "schema": Acknowledgement.model_json_schema()}}}})
def acknowledge(request: Request, alert_id: AlertId,
                principal: Annotated[Principal, Depends(operator)],
                body: Annotated[Acknowledgement | None, Depends(acknowledgement)]) -> dict[str, Any]:
    """Recorded with the token's name, so the log says who took responsibility; the body (an
    optional ``note``) may be left out."""
    store = api_state(request).store
    note = body.note.strip() or None if body is not None and body.note is not None else None
    if not store.acknowledge(alert_id, by=principal.name, ts=time.time(), note=note):
        current = queries.alert(store, alert_id)
        if current is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert is {current['state']}, not raised")
    updated = queries.alert(store, alert_id)
    assert updated is not None
    return shape.alert(updated)
