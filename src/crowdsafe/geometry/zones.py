"""Zone masks per camera: what fraction of each density cell's floor lies inside a zone.

A zone edge rarely follows the 8-pixel grid, and near the camera one cell is a few cm² while
far away it is m²; a 0/1 mask would over- or under-count by whole cells along every edge. So
each cell gets its exact fractional coverage: area(cell floor ∩ zone) / area(cell floor), with
the cell floor the mapped quadrilateral (exact under a homography).
"""

from __future__ import annotations

import numpy as np
import shapely

from crowdsafe.geometry.ground_map import GroundMap


def zone_coverage(ground_map: GroundMap, zone: shapely.Polygon,
                  cells: np.ndarray | None = None) -> np.ndarray:
    """(rows, cols) fraction in [0, 1] of each valid cell's floor inside ``zone``; 0 where masked.

    ``cells`` may pass ``ground_map.cell_polygons()`` to reuse it across zones.
    """
    cells = ground_map.cell_polygons() if cells is None else cells
    cover = np.zeros(ground_map.shape, dtype=np.float64)
    idx = np.flatnonzero(ground_map.valid.ravel())
    if idx.size == 0:
        return cover
    polys = cells.ravel()[idx]
    shapely.prepare(zone)
    hits = shapely.intersects(zone, polys)
    inside = hits & shapely.contains_properly(zone, polys)
    partial = hits & ~inside
    flat = cover.ravel()
    flat[idx[inside]] = 1.0
    if partial.any():
        inter = shapely.area(shapely.intersection(polys[partial], zone))
        flat[idx[partial]] = np.clip(inter / ground_map.area_m2.ravel()[idx[partial]], 0.0, 1.0)
    return cover


def footprint(ground_map: GroundMap, cells: np.ndarray | None = None) -> shapely.Geometry:
    """The floor a camera sees (its valid cells' union), as one (multi)polygon in metres."""
    cells = ground_map.cell_polygons() if cells is None else cells
    polys = cells[ground_map.valid]
    if polys.size == 0:
        return shapely.Polygon()
    try:
        # Cells share their corners exactly, so they form a coverage and the fast union applies.
        return shapely.coverage_union_all(polys)
    except shapely.errors.GEOSException:  # pragma: no cover - numerically touching cells
        return shapely.union_all(polys)
