"""Query parameters every history endpoint shares, checked so hostile values give 4xx, not 500.

Non-numeric values are rejected by FastAPI (422); here: NaN/inf, start >= end, ranges beyond
any plausible clock, and resolutions that are zero, negative, or would make too many buckets
(a year at 1 ms would be 3e10 rows of work).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import HTTPException, Query

MAX_TS = 32_503_680_000.0  # year 3000: later times are typos or attacks
MAX_SPAN_S = 400 * 86_400.0
MAX_BUCKETS = 5_000
DEFAULT_SPAN_S = 3_600.0
DEFAULT_BUCKETS = 360


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    resolution_s: float


def _bad(message: str) -> HTTPException:
    return HTTPException(422, message)  # the constant was renamed across Starlette versions


def time_range(
    start: Annotated[float | None, Query(description="UTC epoch seconds; default end - 1 h")] = None,
    end: Annotated[float | None, Query(description="UTC epoch seconds, exclusive; default now")] = None,
    resolution: Annotated[float | None, Query(
        description=f"bucket seconds; default: the range in about {DEFAULT_BUCKETS} buckets")] = None,
) -> TimeRange:
    for name, value in (("start", start), ("end", end), ("resolution", resolution)):
        if value is not None and not math.isfinite(value):
            raise _bad(f"{name} must be a finite number")
    end = time.time() if end is None else end
    start = end - DEFAULT_SPAN_S if start is None else start
    if not (0.0 <= start <= MAX_TS and 0.0 <= end <= MAX_TS):
        raise _bad(f"start and end must be epoch seconds between 0 and {MAX_TS:.0f}")
    if start >= end:
        raise _bad("start must be before end")
    if end - start > MAX_SPAN_S:
        raise _bad(f"range over {MAX_SPAN_S / 86_400:.0f} days; ask for less")
    if resolution is None:
        resolution = max(1.0, (end - start) / DEFAULT_BUCKETS)
    if resolution <= 0:
        raise _bad("resolution must be positive")
    if resolution > MAX_SPAN_S:
        raise _bad(f"resolution over {MAX_SPAN_S:.0f} s")
    if (end - start) / resolution > MAX_BUCKETS:
        raise _bad(f"more than {MAX_BUCKETS} buckets; raise resolution to at least "
                   f"{math.ceil((end - start) / MAX_BUCKETS)} s")
    return TimeRange(start, end, resolution)
