"""JuPedSim what-if: simulated clearance of one zone's polygon through its exits.

Why and how: docs/design-notes.md, ``crowdsafe.simulate.jupedsim_model``."""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon

from crowdsafe.simulate.clearance import ExitSpec, _exit

CORRIDOR_M = 2.0
MIN_SPACING_M = 0.4
DESIRED_SPEED_MS = 1.2
RADIUS_M = 0.2
_CACHE: dict[str, float] = {}


class JuPedSimUnavailable(RuntimeError):
    """jupedsim is not installed."""


def jupedsim_available() -> bool:
    try:
        import jupedsim  # noqa: F401
    except ImportError:
        return False
    return True


def _require() -> Any:
    try:
        import jupedsim as jps
    except ImportError as exc:
        raise JuPedSimUnavailable(
            "the JuPedSim what-if needs jupedsim: pip install --no-deps jupedsim deprecated wrapt "
            "(simulation core only) or pip install 'crowdsafe[simulate]' "
            "(with its GUI dependencies)") from exc
    return jps


def place_doors(polygon: Polygon, exits: Sequence[ExitSpec]) -> list[LineString]:
    """A door segment per exit, centred on the polygon's edges, longest edge first."""
    ring = list(shapely.geometry.polygon.orient(polygon, sign=1.0).exterior.coords)
    edges = sorted(((LineString([a, b]) for a, b in itertools.pairwise(ring))),
                   key=lambda e: -e.length)
    if len(exits) > len(edges):
        raise ValueError(f"{len(exits)} exits but only {len(edges)} polygon edges to place them on")
    doors = []
    for spec, edge in zip(exits, edges, strict=False):
        width = min(spec.width_m, edge.length * 0.95)
        mid = edge.length / 2
        doors.append(LineString([edge.interpolate(mid - width / 2), edge.interpolate(mid + width / 2)]))
    return doors


def _corridor(door: LineString, polygon: Polygon) -> tuple[Polygon, Polygon]:
    """(corridor outside the door, exit stage at its far end)."""
    (x1, y1), (x2, y2) = door.coords
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy)
    nx, ny = dy / length, -dx / length  # outward normal of a counter-clockwise ring
    probe = Point((x1 + x2) / 2 + 0.05 * nx, (y1 + y2) / 2 + 0.05 * ny)
    if polygon.contains(probe):
        nx, ny = -nx, -ny

    def band(d0: float, d1: float) -> Polygon:
        return Polygon([(x1 + d0 * nx, y1 + d0 * ny), (x2 + d0 * nx, y2 + d0 * ny),
                        (x2 + d1 * nx, y2 + d1 * ny), (x1 + d1 * nx, y1 + d1 * ny)])

    return band(-0.01, CORRIDOR_M), band(CORRIDOR_M - 0.5, CORRIDOR_M - 0.05)


def geometry_key(polygon: Sequence[tuple[float, float]] | Polygon, exits: Sequence[ExitSpec]) -> str:
    poly = polygon if isinstance(polygon, Polygon) else Polygon(polygon)
    h = hashlib.sha256(shapely.to_wkb(shapely.normalize(poly)))
    h.update(repr([(e.width_m, e.kind) for e in exits]).encode())
    return h.hexdigest()[:16]


def clearance_cache_file() -> Path:
    """The on-disk what-if cache: ``clearance.json`` in crowdsafe's user cache folder."""
    from crowdsafe.config.cache import cache_dir

    return cache_dir() / "clearance.json"


def _version() -> str:
    try:
        return importlib.metadata.version("jupedsim")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def cache_key(polygon: Sequence[tuple[float, float]] | Polygon, exits: Sequence[ExitSpec], n_people: int,
              seed: int, dt: float, max_time_s: float) -> str:
    return json.dumps([geometry_key(polygon, exits), int(n_people), int(seed), dt, max_time_s,
                       DESIRED_SPEED_MS, RADIUS_M, _version()])


def _read_cache(path: Path) -> dict[str, float | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: a cache, so start again rather than fail
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, seconds: float) -> None:
    data = _read_cache(path)
    data[key] = seconds if math.isfinite(seconds) else None  # JSON has no inf
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache costs a re-run next time, nothing else


def cached_clearance(polygon: Sequence[tuple[float, float]] | Polygon,
                     exits: Sequence[ExitSpec | Mapping[str, Any] | Any], n_people: int, seed: int = 0, *,
                     dt: float = 0.01, max_time_s: float = 1800.0, cache_file: Path | None = None,
                     ) -> float | None:
    """The cached result of ``simulate_clearance`` with these arguments, or None (never simulates)."""
    key = cache_key(polygon, [_exit(e) for e in exits], n_people, seed, dt, max_time_s)
    if key in _CACHE:
        return _CACHE[key]
    if cache_file is not None:
        data = _read_cache(cache_file)
        if key in data:
            value = data[key]
            _CACHE[key] = math.inf if value is None else float(value)
            return _CACHE[key]
    return None


def simulate_clearance(polygon: Sequence[tuple[float, float]] | Polygon,
                       exits: Sequence[ExitSpec | Mapping[str, Any] | Any], n_people: int, seed: int = 0,
                       *, dt: float = 0.01, max_time_s: float = 1800.0,
                       cache_file: Path | None = None) -> float:
    """Seconds until the last of ``n_people`` leaves the zone; inf if not all left by ``max_time_s``."""
    specs = [_exit(e) for e in exits]
    if not specs:
        raise ValueError("the zone has no exits to clear through")
    if n_people <= 0:
        return 0.0
    hit = cached_clearance(polygon, specs, n_people, seed, dt=dt, max_time_s=max_time_s,
                           cache_file=cache_file)
    if hit is not None:
        return hit
    key = cache_key(polygon, specs, n_people, seed, dt, max_time_s)
    jps = _require()
    area = polygon if isinstance(polygon, Polygon) else Polygon(polygon)
    doors = place_doors(area, specs)
    corridors, stages = zip(*(_corridor(d, area) for d in doors), strict=True)
    walkable = shapely.union_all([area, *corridors])
    sim = jps.Simulation(model=jps.CollisionFreeSpeedModel(), geometry=walkable, dt=dt)
    journeys = []
    for stage in stages:
        stage_id = sim.add_exit_stage(stage)
        journeys.append((sim.add_journey(jps.JourneyDescription([stage_id])), stage_id))
    try:
        positions = jps.distribute_by_number(polygon=area, number_of_agents=int(n_people),
                                             distance_to_agents=MIN_SPACING_M, distance_to_polygon=0.2,
                                             seed=int(seed))
    except Exception as exc:  # jupedsim raises its own AgentNumberError, not a ValueError
        raise ValueError(f"cannot place {n_people} people {MIN_SPACING_M} m apart in a "
                         f"{area.area:.0f} m² zone: {exc}") from exc
    centres = np.array([[d.centroid.x, d.centroid.y] for d in doors])
    for pos in positions:
        nearest = int(np.argmin(np.hypot(*(centres - np.asarray(pos)).T)))
        journey_id, stage_id = journeys[nearest]
        sim.add_agent(jps.CollisionFreeSpeedModelAgentParameters(
            position=pos, journey_id=journey_id, stage_id=stage_id, desired_speed=DESIRED_SPEED_MS,
            radius=RADIUS_M))
    max_iter = int(max_time_s / dt)
    while sim.agent_count() > 0 and sim.iteration_count() < max_iter:
        sim.iterate()
    result = sim.elapsed_time() if sim.agent_count() == 0 else math.inf
    _CACHE[key] = result
    if cache_file is not None:
        _write_cache(cache_file, key, result)
    return result
