"""Occupancy forecasts per zone and the staffing plan from them (viewer and up).

Forecasts are computed from the store on request (``forecast.live``), so the API shows the same
numbers whether or not a runner runs in this process, and they refresh as soon as a new minute
of readings is stored. The site's model is fitted once, in the background, when the first
forecast is asked for; until it is ready these routes answer 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import api_state
from crowdsafe.api.params import MAX_TS
from crowdsafe.forecast.live import ForecastNotReady, ForecastUnavailable, LiveForecasts
from crowdsafe.forecast.staffing import plan_csv
from crowdsafe.store import Store

router = APIRouter(prefix="/api/forecast", tags=["forecast"])
RETRY_AFTER_S = 5
_LOCK = threading.Lock()

At = Annotated[float | None, Query(description="plan as of this UTC epoch time; default now")]
Slot = Annotated[int, Query(ge=5, le=60, description="slot length, minutes")]
Bound = Annotated[Literal["mean", "hi80", "hi95"] | None, Query(
    description="forecast value to staff for; default the site policy's (hi80)")]
NOT_READY = {503: {"description": "the forecast model is still being fitted; retry after Retry-After s"}}


def live_forecasts(request: Request) -> LiveForecasts:
    """This app's forecaster for the current site view (a site reload gets a new one)."""
    site = api_state(request).site_view.site
    with _LOCK:
        live: LiveForecasts | None = getattr(request.app.state, "crowdsafe_forecasts", None)
        if live is None or live.site is not site:
            state = api_state(request)
            live = LiveForecasts(site, store=state.store, fit=state.settings.forecast_fit).start()
            request.app.state.crowdsafe_forecasts = live
    return live


def _check_at(at: float | None) -> None:
    if at is not None and not (math.isfinite(at) and 0.0 <= at <= MAX_TS):
        raise HTTPException(422, f"at must be epoch seconds between 0 and {MAX_TS:.0f}")


def _unavailable(exc: ForecastUnavailable) -> HTTPException:
    if isinstance(exc, ForecastNotReady):
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                             headers={"Retry-After": str(RETRY_AFTER_S)})
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


@router.get("/status", summary="Is the forecast model ready? (starts fitting it; always 200)")
def forecast_status(request: Request, _: Annotated[Principal, Depends(viewer)]) -> dict[str, Any]:
    """For clients that poll: ask here until ``ready``, then fetch forecasts without a 503."""
    return live_forecasts(request).status()


@router.get("", summary="Occupancy forecast of every zone, 5-60 min ahead, 80/95 % intervals",
            responses=NOT_READY)
def forecasts(request: Request, _: Annotated[Principal, Depends(viewer)], at: At = None) -> dict[str, Any]:
    """Zones whose newest reading is over 10 minutes old are left out: no forecast from a dead camera."""
    _check_at(at)
    live = live_forecasts(request)
    store: Store = api_state(request).store
    try:
        result = live.forecasts(store, at)
    except ForecastUnavailable as exc:
        raise _unavailable(exc) from None
    return {"now": result.now, "method": result.method,
            "zones": [f.as_dict() for _, f in sorted(result.forecasts.items())]}


def _plan(request: Request, at: float | None, slot_minutes: int, bound: str | None) -> Any:
    _check_at(at)
    live = live_forecasts(request)
    if live.site.staffing is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the site file has no 'staffing' policy")
    try:
        return live.staffing(api_state(request).store, at, slot_minutes, bound)
    except ForecastUnavailable as exc:
        raise _unavailable(exc) from None


@router.get("/staffing", summary="Stewards per zone and medics per time slot, from the forecast",
            responses={404: {"description": "no staffing policy in the site file"}, **NOT_READY})
def staffing(request: Request, _: Annotated[Principal, Depends(viewer)], at: At = None,
             slot_minutes: Slot = 15, bound: Bound = None) -> dict[str, Any]:
    """The site file's policy applied to each zone's forecast upper bound, slot by slot."""
    return _plan(request, at, slot_minutes, bound).as_dict()


@router.get("/staffing.csv", summary="The staffing plan as CSV (one row per zone and slot, site rows)",
            response_class=Response,
            responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no staffing policy"},
                       **NOT_READY})
def staffing_csv(request: Request, _: Annotated[Principal, Depends(viewer)], at: At = None,
                 slot_minutes: Slot = 15, bound: Bound = None) -> Response:
    plan = _plan(request, at, slot_minutes, bound)
    return Response(plan_csv(plan), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="staffing.csv"'})
