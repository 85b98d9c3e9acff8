"""The event debrief of a period as one HTML page (operators and admins: the dashboard's Report button).

An hour renders in a fraction of a second (charts are written as SVG text), so reports render
side by side, each in one of the API's bounded worker threads (``api_threads``): a scripted loop
queues behind those, never beside the counting engine. The page is the same file ``crowdsafe
report`` writes: no script, nothing fetched, safe to save or print.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from crowdsafe.api.auth import Principal, operator
from crowdsafe.api.context import api_state
from crowdsafe.api.params import TimeRange, time_range
from crowdsafe.api.routes.forecast import live_forecasts
from crowdsafe.forecast.live import ForecastUnavailable

router = APIRouter(prefix="/api/report", tags=["report"])
SignText = Annotated[str, Query(max_length=120, pattern=r"^[^\x00-\x1f\x7f]*$")]


def period(
    start: Annotated[float | None, Query(description="UTC epoch seconds; default end - 1 h")] = None,
    end: Annotated[float | None, Query(description="UTC epoch seconds, exclusive; default now")] = None,
) -> TimeRange:
    """The same checks as every history endpoint (finite, ordered, at most 400 days)."""
    return time_range(start, end, None)


@router.get("", summary="Event debrief of a period as self-contained HTML (operator)",
            response_class=HTMLResponse, responses={200: {"content": {"text/html": {}}}})
def report(request: Request, _: Annotated[Principal, Depends(operator)],
           span: Annotated[TimeRange, Depends(period)],
           prepared_by: Annotated[SignText, Query(description="name for the sign-off block")] = "",
           reviewed_by: Annotated[SignText, Query(description="name for the sign-off block")] = "",
           date: Annotated[SignText, Query(description="date for the sign-off block")] = "") -> HTMLResponse:
    """Peaks, time in LoS and risk bands, gate totals, alerts with times to acknowledge, staffing,
    egress and data quality, with charts, for [start, end), from the store the API reads; a
    sign-off block filled from ``prepared_by``, ``reviewed_by`` and ``date`` (blank to sign on paper)."""
    from crowdsafe.report.compute import SignOff, build_report
    from crowdsafe.report.render import render_html

    state = api_state(request)
    live = live_forecasts(request)
    try:  # the API's own model, fitted in the background: a report request never waits for a fit
        model, unavailable = live.model(), None
    except ForecastUnavailable as exc:
        model, unavailable = None, str(exc)
    built = build_report(state.store, state.site_view.site, span.start, span.end,
                         backgrounds_dir=state.settings.backgrounds_dir, forecast=model is not None,
                         forecast_model=model, forecast_unavailable=unavailable,
                         signoff=SignOff(prepared_by.strip(), reviewed_by.strip(), date.strip()),
                         view=state.site_view)
    page = render_html(built, generated_ts=time.time())
    return HTMLResponse(page, headers={"Content-Disposition": 'inline; filename="crowdsafe-report.html"',
                                       "Cache-Control": "no-store"})
