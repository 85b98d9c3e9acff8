"""Times of the debrief: the site's own time zone first, UTC alongside, always 24-hour.

Readers sign the debrief where the event happened, so local time leads; UTC stays next to it
because the store, logs and other sites' reports are in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Clock:
    zone: str = "UTC"

    @property
    def tz(self) -> tzinfo:
        return UTC if self.zone == "UTC" else ZoneInfo(self.zone)

    @property
    def is_utc(self) -> bool:
        return self.zone == "UTC"

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)

    def offset_s(self, ts: float) -> float:
        offset = self.local(ts).utcoffset()
        return 0.0 if offset is None else offset.total_seconds()

    def abbrev(self, ts: float) -> str:
        """'CET', 'BST', or '+0530' where the zone has no letters; 'UTC' for UTC."""
        return "UTC" if self.is_utc else (self.local(ts).tzname() or "")

    def full(self, ts: float | None) -> str:
        """'2026-12-07 14:03:05 CET (13:03:05 UTC)'; one UTC stamp when the site is in UTC."""
        if ts is None or not math.isfinite(ts):
            return "–"
        utc = datetime.fromtimestamp(ts, UTC)
        if self.is_utc:
            return utc.strftime("%Y-%m-%d %H:%M:%S UTC")
        local = self.local(ts)
        day = "" if local.date() == utc.date() else utc.strftime("%Y-%m-%d ")
        return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({day}{utc:%H:%M:%S} UTC)"

    def date(self, ts: float) -> str:
        return f"{self.local(ts):%Y-%m-%d}"
