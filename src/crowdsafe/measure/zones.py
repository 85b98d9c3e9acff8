"""Zone readings: people, people per m², Level of Service and risk band, per zone per moment.

Density is count / the part of the zone some camera sees, never the zone's full area.

Why and how: docs/design-notes.md, ``crowdsafe.measure.zones``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.safety.profiles import ProfileBook

Interval = tuple[float, float]


class DensityMap(Protocol):
    """A camera's density map as measuring reads it (``counting``'s ``DensityResult`` is one):
    defined here so that measuring depends on arrays, not on the counter that made them."""

    @property
    def density(self) -> np.ndarray: ...  # people per cell

    @property
    def cell(self) -> int: ...  # pixels per cell side

    @property
    def count(self) -> float: ...  # the whole map's people


@dataclass(frozen=True)
class ZoneReading:
    zone_id: str
    ts: float  # UTC epoch seconds of the frames
    count: float
    area_m2: float  # the zone's area in the site file
    covered_m2: float  # the part of it seen by some camera
    density: float  # people per m² of covered area; NaN when nothing is covered
    los: str | None
    risk: str | None
    coverage_pct: float
    interval: Interval | None = None  # (low, high) people, when the counter gave one

    def as_row(self) -> dict[str, object]:
        """Columns of the store's ``zone_readings`` table."""
        low, high = self.interval if self.interval is not None else (None, None)
        return {"zone_id": self.zone_id, "ts": self.ts, "count": self.count, "count_low": low,
                "count_high": high, "area_m2": self.area_m2,
                "density": None if math.isnan(self.density) else self.density,
                "los": self.los, "risk": self.risk, "coverage_pct": self.coverage_pct}


def _camera_interval(result: DensityMap, interval: Interval | None,
                     rel_error: float | None) -> Interval | None:
    """(low, high) as fractions of this camera's count."""
    if interval is not None:
        total = result.count
        if total <= 0:
            return (1.0, 1.0)
        return (interval[0] / total, interval[1] / total)
    if rel_error is not None:
        return (max(1.0 - rel_error, 0.0), 1.0 + rel_error)
    return None


def zone_readings(geometry: SiteGeometry, results: Mapping[str, DensityMap], ts: float, *,
                  intervals: Mapping[str, Interval] | None = None,
                  relative_error: float | Mapping[str, float] | None = None,
                  profiles: ProfileBook | None = None) -> list[ZoneReading]:
    """One reading per zone from the cameras' density maps taken at (about) ``ts``.

    Cameras missing from ``results`` contribute nothing (their floor counts as unseen for this
    reading, which lowers coverage_pct). ``intervals`` gives per camera (low, high) of its count;
    ``relative_error`` a fraction (one for all cameras or per camera id).
    """
    book = profiles or geometry.site.safety.profile_book()
    fractions: dict[str, Interval | None] = {}
    for cid, result in results.items():
        cam = geometry.cameras.get(cid)
        if cam is None:
            raise ValueError(f"density map for unknown camera {cid!r}; "
                             f"site cameras: {sorted(geometry.cameras)}")
        expected = cam.ground_map.shape
        if result.density.shape != expected or result.cell != cam.ground_map.cell:
            w, h = cam.ground_map.image_size
            raise ValueError(f"camera {cid}: density map {result.density.shape} (cell {result.cell}) "
                             f"does not match the {w}x{h} calibration ({expected}, cell "
                             f"{cam.ground_map.cell}); is the frame size right?")
        rel = relative_error.get(cid) if isinstance(relative_error, Mapping) else relative_error
        fractions[cid] = _camera_interval(result, (intervals or {}).get(cid), rel)
    with_interval = any(f is not None for f in fractions.values())

    readings = []
    for zid, zg in geometry.zones.items():
        count = low = high = 0.0
        for cid, result in results.items():
            part = float(np.sum(result.density * geometry.cameras[cid].zone_weights[zid], dtype=np.float64))
            count += part
            lo_f, hi_f = fractions[cid] or (1.0, 1.0)
            low, high = low + part * lo_f, high + part * hi_f
        # The models' output layer has no ReLU: cells of empty floor read small negative values
        # that cancel noise elsewhere in the image count; a zone cannot hold fewer than nobody.
        count, low, high = max(count, 0.0), max(low, 0.0), max(high, 0.0)
        covered = zg.covered_m2 if len(results) == len(geometry.cameras) else sum(
            geometry.cameras[cid].zone_owned_m2[zid] for cid in results)
        density = count / covered if covered > 0 else math.nan
        los = book.los_profile(zg.zone.type, zg.zone.los_profile).classify(density)
        readings.append(ZoneReading(
            zone_id=zid, ts=ts, count=count, area_m2=zg.area_m2, covered_m2=covered, density=density,
            los=los, risk=book.risk.classify(density),
            coverage_pct=100.0 * covered / zg.area_m2 if zg.area_m2 > 0 else 0.0,
            interval=(low, high) if with_interval else None))
    return readings

