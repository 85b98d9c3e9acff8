"""Readings as the API sends them, identical over REST and SSE so the dashboard merges either."""

from __future__ import annotations

import time
from typing import Any

from crowdsafe.geometry.siteview import SiteView
from crowdsafe.simulate.clearance import live_clearance_s


def _r(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def zone_reading(view: SiteView, row: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    info = view.zone_info(row["zone_id"])
    capacity = info["capacity"]
    now = time.time() if now is None else now
    return {
        "zone_id": row["zone_id"], "ts": row["ts"], "age_s": round(max(0.0, now - row["ts"]), 1),
        "count": _r(row["count"], 2), "count_low": _r(row.get("count_low"), 2),
        "count_high": _r(row.get("count_high"), 2), "area_m2": _r(row.get("area_m2"), 2),
        "density": _r(row.get("density"), 4),
        "density_low": _r(_per_m2(row, "count_low"), 4), "density_high": _r(_per_m2(row, "count_high"), 4),
        "los": row.get("los"), "risk": row.get("risk"),
        "coverage_pct": _r(row.get("coverage_pct"), 1), "capacity": capacity,
        "occupancy_pct": round(100.0 * row["count"] / capacity, 1) if capacity else None,
        "clearance_s": _clearance(view, row),
    }


def _per_m2(row: dict[str, Any], key: str) -> float | None:
    """A count bound as people per m², over the same area ``density`` divides by (so the bounds
    scale with the count's); with a zero count, over the covered part of the zone's area."""
    value, count, density = row.get(key), row.get("count"), row.get("density")
    if value is None or density is None or count is None:
        return None
    if count > 0:
        return float(density) * float(value) / float(count)
    area, seen = row.get("area_m2"), row.get("coverage_pct")
    return float(value) / (float(area) * float(seen) / 100.0) if area and seen else None


def _clearance(view: SiteView, row: dict[str, Any]) -> float | None:
    """Seconds to clear the zone through its exits at this count (flow formula); None without exits."""
    seconds = live_clearance_s(view.zone(row["zone_id"]), float(row["count"]), view.site.safety)
    return None if seconds is None else round(seconds, 1)


def line_reading(row: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {"line_id": row["line_id"], "ts": row["ts"], "age_s": round(max(0.0, now - row["ts"]), 1),
            "period_s": _r(row["period_s"]), "in_count": _r(row["in_count"], 2),
            "out_count": _r(row["out_count"], 2), "flow_pmm": _r(row.get("flow_pmm"), 2)}


def camera_health(row: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {"camera_id": row["camera_id"], "ts": row["ts"], "age_s": round(max(0.0, now - row["ts"]), 1),
            "status": row["status"], "fps": _r(row.get("fps"), 2), "last_frame_ts": row.get("last_frame_ts"),
            "errors": row.get("errors"), "message": row.get("message")}


def alert(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _r(v) if k == "value" else v for k, v in row.items()}
