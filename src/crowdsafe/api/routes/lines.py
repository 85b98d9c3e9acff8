"""Latest flow per configured counting line, and bucketed history."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

import crowdsafe.api.shape as shape
import crowdsafe.store.queries as queries
from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import api_state
from crowdsafe.api.params import TimeRange, time_range
from crowdsafe.config.site import Site

router = APIRouter(prefix="/api/lines", tags=["lines"])
LineId = Annotated[str, Path(max_length=128)]


#: Without a scheduled event under way, running totals cover this much of the past.
TOTALS_FALLBACK_S = 24 * 3600.0


def totals_since(site: Site, now: float) -> tuple[float, str]:
    """Where the running totals start: the latest scheduled event begun in the last 24 h (doors
    open, else start), else 24 h ago; and which of the two it is, for the dashboard to say."""
    begun = []
    for event in site.schedule:
        opening = event.epoch(event.doors_open or event.start)
        if now - TOTALS_FALLBACK_S <= opening <= now:
            begun.append((opening, event.name))
    if begun:
        opening, name = max(begun)
        return opening, name
    return now - TOTALS_FALLBACK_S, "last 24 h"


@router.get("", summary="Latest flow of every line, with running totals")
def lines(request: Request, _: Annotated[Principal, Depends(viewer)]) -> list[dict[str, Any]]:
    """``totals``: people in and out since the current event began (doors open, from the site's
    schedule), or over the last 24 h without one; ``since_ts`` and ``since`` say which."""
    state = api_state(request)
    view = state.site_view
    rows = queries.latest_rows(state, "line_readings")
    latest = {r["line_id"]: r for r in rows if r["line_id"] in view.line_ids}
    now = time.time()
    since, label = totals_since(view.site, now)
    sums = queries.line_totals(state.store, since, now + 1.0)
    out = []
    for info in view.payload["lines"]:
        total_in, total_out = sums.get(info["id"], (0.0, 0.0))
        out.append({**info,
                    "reading": shape.line_reading(latest[info["id"]], now) if info["id"] in latest else None,
                    "totals": {"in": round(total_in, 1), "out": round(total_out, 1), "since_ts": since,
                               "since": label}})
    return out


@router.get("/{line_id}/history", summary="Line flow per time bucket")
def line_history(request: Request, line_id: LineId, _: Annotated[Principal, Depends(viewer)],
                 span: Annotated[TimeRange, Depends(time_range)]) -> dict[str, Any]:
    """Per bucket the mean of each reading's in/out counts and flow (p/m/min): readings may have
    different periods, so means, not sums, are comparable across buckets."""
    state = api_state(request)
    if line_id not in state.site_view.line_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such line")
    series = {col: {b: (mean, hi) for b, mean, _lo, hi in state.store.history(
        "line_readings", line_id, col, span.start, span.end, span.resolution_s)}
        for col in ("in_count", "out_count", "flow_pmm")}
    points = [{"ts": b, "in_count": round(mean_in, 2), "out_count": round(series["out_count"][b][0], 2),
               "flow_pmm": round(series["flow_pmm"][b][0], 2) if b in series["flow_pmm"] else None,
               "flow_pmm_max": round(series["flow_pmm"][b][1], 2) if b in series["flow_pmm"] else None}
              for b, (mean_in, _) in sorted(series["in_count"].items())]
    return {"line_id": line_id, "start": span.start, "end": span.end, "resolution_s": span.resolution_s,
            "points": points}
