"""The site as the dashboard draws it: zones, lines, camera footprints, zones seen in each image.

Computed once per (re)load, because fitting homographies and clipping footprints costs tens of
milliseconds, while the map is requested on every page load. Camera sources are never exposed:
a stream URL may carry a password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from crowdsafe.config.site import Site, SiteError, Zone
from crowdsafe.geometry.site import SiteGeometry, build_site_geometry
from crowdsafe.safety.profiles import Profile

log = logging.getLogger(__name__)
MAP_MARGIN = 0.15  # share of the zones' extent shown around them on the map


def _bands(profile: Profile) -> list[dict[str, Any]]:
    return [{"label": b.label, "below": None if np.isinf(b.upper) else b.upper} for b in profile.bands]


def _coords(geom: shapely.Geometry, digits: int = 3) -> list[list[list[float]]]:
    """Exterior rings of a (multi)polygon, rounded: enough for a map, small on the wire."""
    polys = getattr(geom, "geoms", [geom])
    return [[[round(x, digits), round(y, digits)] for x, y in p.exterior.coords]
            for p in polys if isinstance(p, shapely.Polygon) and not p.is_empty]


def _to_image(ground_to_image: np.ndarray, ring: list[list[float]]) -> list[list[float]]:
    pts = np.c_[np.asarray(ring, dtype=float), np.ones(len(ring))] @ ground_to_image.T
    return [[round(float(u), 1), round(float(v), 1)] for u, v in pts[:, :2] / pts[:, 2:3]]


def _source_kind(source: str) -> str:
    return source.split("://", 1)[0].lower() if "://" in source else "file"


@dataclass(frozen=True)
class SiteView:
    site: Site
    payload: dict[str, Any]
    zone_ids: frozenset[str]
    line_ids: frozenset[str]
    camera_ids: frozenset[str]

    def zone(self, zone_id: str) -> Zone:
        return next(z for z in self.site.zones if z.id == zone_id)

    def zone_info(self, zone_id: str) -> dict[str, Any]:
        return next(z for z in self.payload["zones"] if z["id"] == zone_id)


def build_site_view(site: Site) -> SiteView:
    book = site.safety.profile_book()
    try:
        geometry: SiteGeometry | None = build_site_geometry(site)
    except SiteError as exc:  # e.g. a stream camera without image_size: the map still works
        log.warning("site geometry unavailable (no footprints or camera overlays): %s", exc)
        geometry = None
    zones = []
    for zone in site.zones:
        poly = shapely.Polygon(zone.polygon)
        los = book.los_profile(zone.type, zone.los_profile)
        zg = geometry.zones.get(zone.id) if geometry else None
        zones.append({
            "id": zone.id, "name": zone.label, "type": zone.type, "capacity": zone.capacity,
            "polygon": _coords(poly)[0], "centroid": [round(poly.centroid.x, 3), round(poly.centroid.y, 3)],
            "area_m2": round(poly.area, 2), "coverage_pct": round(zg.coverage_pct, 1) if zg else None,
            "los_profile": los.name, "los_bands": _bands(los),
            "exits": [e.model_dump() for e in zone.exits]})
    lines = [{"id": ln.id, "name": ln.name or ln.id, "a": list(ln.a), "b": list(ln.b),
              "width_m": ln.width_m or round(ln.length_m, 3), "in_normal": list(ln.positive_normal())}
             for ln in site.lines]
    extent = shapely.unary_union([shapely.Polygon(z.polygon) for z in site.zones]
                                 + [shapely.LineString([ln.a, ln.b]) for ln in site.lines])
    if extent.is_empty:
        extent = shapely.box(-10, -10, 10, 10)
    minx, miny, maxx, maxy = extent.bounds
    pad = MAP_MARGIN * max(maxx - minx, maxy - miny, 1.0)
    view = shapely.box(minx - pad, miny - pad, maxx + pad, maxy + pad)
    cameras = []
    for cam in site.cameras:
        entry: dict[str, Any] = {"id": cam.id, "source_kind": _source_kind(cam.source),
                                 "sampling_s": cam.sampling.seconds, "image_size": None,
                                 "footprint": [], "zones_in_image": {}}
        cg = geometry.cameras.get(cam.id) if geometry else None
        if cg is not None:
            entry["image_size"] = list(cg.ground_map.image_size)
            entry["footprint"] = _coords(shapely.intersection(cg.footprint, view))
            for zone in site.zones:
                seen = shapely.intersection(shapely.Polygon(zone.polygon), cg.footprint)
                rings = _coords(seen)
                if rings:
                    entry["zones_in_image"][zone.id] = [_to_image(cg.fit.inverse, r) for r in rings]
        cameras.append(entry)
    payload = {
        "name": site.name, "zones": zones, "lines": lines, "cameras": cameras,
        "bounds": [round(v, 3) for v in view.bounds],
        "risk_profile": book.risk.name, "risk_bands": _bands(book.risk),
    }
    return SiteView(site=site, payload=payload, zone_ids=frozenset(z.id for z in site.zones),
                    line_ids=frozenset(ln.id for ln in site.lines),
                    camera_ids=frozenset(c.id for c in site.cameras))
