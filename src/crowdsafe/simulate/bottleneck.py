"""A crowd through a bottleneck (JuPedSim), seen by a virtual calibrated camera, to score gates.

Why: a gate's count can only be checked against exact crossings, and annotated video has few of
them. JuPedSim walks a few hundred people through a gap in a wall; their heads are rendered as a
density map through a camera calibrated like a real one (the site file's own geometry code), and
the gate estimators of ``crowdsafe.measure.flow`` are scored against the crossings of the
simulated trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from crowdsafe.config.site import parse_site
from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.pose import CameraPose
from crowdsafe.geometry.site import SiteGeometry, build_site_geometry
from crowdsafe.simulate.jupedsim_model import _require

#: Seconds between recorded positions: a 10 fps camera's flow pair.
RECORD_DT_S = 0.1
#: JuPedSim's time step: the collision-free speed model is first order, and 0.05 s moves a
#: walker 7 cm, a third of their radius.
SIM_DT_S = 0.05
#: Walkers' radius: 0.2 m (JuPedSim's default) jams the collision-free speed model for good in a
#: 0.8 m gap, two abreast filling it exactly; 0.15 m keeps it flowing.
AGENT_RADIUS_M = 0.15
IMAGE_SIZE = (768, 576)
FOCAL_PX = 800.0
ROOM_HALF_WIDTH_M = 4.0
ROOM_DEPTH_M = 12.0
WALL_M = 0.2  # wall thickness; the gate line runs along its middle, x = WALL_M / 2
#: Per-cell counts are Poisson with this many "counts per person", then divided by it: the
#: count of a region has variance mean / 4 (a 20-person count is off by 2.2 at one sigma; the
#: demo camera's tuned counter has a whole-frame MAE of 1.4 on about 20 people).
NOISE_COUNTS_PER_PERSON = 4.0
#: Only heads within this distance of the gap are rendered: no one further can reach the gate's
#: passage within half of a 2 s period (the reach is checked in ``render``).
RENDER_RADIUS_M = 4.5


@dataclass(frozen=True)
class Trajectories:
    """Head positions (frames, agents, 2) every ``RECORD_DT_S``; NaN before entry / after exit."""

    positions: np.ndarray
    gap_m: float

    @property
    def duration_s(self) -> float:
        return (len(self.positions) - 1) * RECORD_DT_S

    @property
    def gate(self) -> tuple[np.ndarray, np.ndarray]:
        x = WALL_M / 2
        return np.array([x, -self.gap_m / 2]), np.array([x, self.gap_m / 2])

    def crossing_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) of the exact crossings of the gap, in (+x) and out (-x), from linear steps."""
        a, b = self.gate
        p, q = self.positions[:-1], self.positions[1:]
        sp, sq = p[..., 0] - a[0], q[..., 0] - a[0]
        ok = np.isfinite(sp) & np.isfinite(sq)
        sp, sq = np.where(ok, sp, 0.0), np.where(ok, sq, 0.0)
        fwd = ok & (sp < 0) & (sq >= 0)
        back = ok & (sq < 0) & (sp >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(fwd | back, sp / (sp - sq), 0.0)
        y = p[..., 1] + t * (q[..., 1] - p[..., 1])
        through = (y >= a[1]) & (y <= b[1])
        frames = np.arange(len(p))[:, None] + t
        return frames[fwd & through] * RECORD_DT_S, frames[back & through] * RECORD_DT_S


def simulate(gap_m: float, n_people: int = 200, seed: int = 0, max_time_s: float = 600.0) -> Trajectories:
    """Walk ``n_people`` from a 12 x 8 m room through a ``gap_m`` gap into another room and out."""
    import shapely

    jps = _require()
    h, d, wall = ROOM_HALF_WIDTH_M, ROOM_DEPTH_M, WALL_M
    left = shapely.box(-d, -h, 0.0, h)
    gap = shapely.box(0.0, -gap_m / 2, wall, gap_m / 2)
    right = shapely.box(wall, -h, wall + d, h)
    sim = jps.Simulation(model=jps.CollisionFreeSpeedModel(), geometry=shapely.union_all([left, gap, right]),
                         dt=SIM_DT_S)
    exit_id = sim.add_exit_stage(shapely.box(wall + d - 0.6, -h + 0.2, wall + d - 0.1, h - 0.2))
    journey = sim.add_journey(jps.JourneyDescription([exit_id]))
    start = shapely.box(-d + 0.3, -h + 0.3, -1.0, h - 0.3)
    positions = jps.distribute_by_number(polygon=start, number_of_agents=n_people, distance_to_agents=0.45,
                                         distance_to_polygon=0.2, seed=seed)
    rng = np.random.default_rng(seed)
    ids = []
    for pos in positions:
        ids.append(sim.add_agent(jps.CollisionFreeSpeedModelAgentParameters(
            position=pos, journey_id=journey, stage_id=exit_id, desired_speed=float(rng.uniform(1.0, 1.5)),
            radius=AGENT_RADIUS_M)))
    index = {agent: i for i, agent in enumerate(ids)}
    every = round(RECORD_DT_S / SIM_DT_S)
    frames = []
    while sim.agent_count() > 0 and sim.elapsed_time() < max_time_s:
        if sim.iteration_count() % every == 0:
            frame = np.full((len(ids), 2), np.nan)
            for agent in sim.agents():
                frame[index[agent.id]] = agent.position
            frames.append(frame)
        sim.iterate()
    frames.append(np.full((len(ids), 2), np.nan))
    return Trajectories(np.asarray(frames), gap_m)


def camera_pose(height_m: float) -> CameraPose:
    """A camera ``height_m`` up, 6 m downstream and 2 m to the side of the gap, looking at it."""
    centre = np.array([6.0, 2.0, height_m])
    target = np.array([WALL_M / 2, 0.0, 0.0])
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera x (right), y (down), z (forward)
    K = np.array([[FOCAL_PX, 0, IMAGE_SIZE[0] / 2], [0, FOCAL_PX, IMAGE_SIZE[1] / 2], [0, 0, 1.0]])
    return CameraPose(K=K, R=R, t=-R @ centre, focal_estimated=False)


def site_dict(pose: CameraPose, gap_m: float, passage: Any = None) -> dict[str, Any]:
    """A site file for the virtual camera: calibrated from floor points as a surveyor would."""
    ground = np.array([[x, y] for x in (-3.0, -1.5, 0.0, 1.5, 3.0) for y in (-3.0, -1.5, 0.0, 1.5, 3.0)])
    image = pose.project(np.column_stack([ground, np.zeros(len(ground))]))
    seen = np.all(np.isfinite(image), axis=1) & np.all((image >= 0) & (image < IMAGE_SIZE), axis=1)
    ground, image = ground[seen], image[seen]
    x = WALL_M / 2
    line: dict[str, Any] = {"id": "gap", "a": [x, -gap_m / 2], "b": [x, gap_m / 2], "width_m": gap_m,
                            "positive": [1.0, 0.0]}
    if passage is not None:
        line["passage"] = passage
    return {"name": "bottleneck", "cameras": [{
        "id": "cam", "source": "virtual.mp4",
        "calibration": {"image_points": image.tolist(), "ground_points": ground.tolist(),
                        "image_size": list(IMAGE_SIZE), "focal_px": FOCAL_PX,
                        "principal_point": [IMAGE_SIZE[0] / 2, IMAGE_SIZE[1] / 2]}}],
        "zones": [{"id": "room", "type": "walkway",
                   "polygon": [[-4.0, -4.0], [4.0, -4.0], [4.0, 4.0], [-4.0, 4.0]]}],
        "lines": [line]}


def wall_passage() -> list[list[float]]:
    """The wall-to-wall segment through the gap."""
    x = WALL_M / 2
    return [[x, -ROOM_HALF_WIDTH_M], [x, ROOM_HALF_WIDTH_M]]


@dataclass
class VirtualCamera:
    """Renders heads as a counter's density map (Gaussian on the ground) and their image velocity."""

    geometry: SiteGeometry
    kernel_m: float
    noise: float = NOISE_COUNTS_PER_PERSON
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @cached_property
    def _pattern(self) -> np.ndarray:
        """Offsets (metres) of the points a head's unit mass is split into: a Gaussian of
        ``kernel_m`` sampled on rings, the same for every head (no sampling noise of its own)."""
        rings = [(0.0, 1)] + [(r, 8 * k) for k, r in enumerate((0.5, 1.0, 1.5, 2.0, 2.5), start=1)]
        pts, weights = [], []
        for radius, count in rings:
            angles = 2 * np.pi * (np.arange(count) + 0.5 * (count % 2 == 0)) / count
            for ang in angles:
                pts.append([radius * np.cos(ang), radius * np.sin(ang)])
                weights.append(np.exp(-0.5 * radius**2) * (radius if radius > 0 else 0.25) / count)
        w = np.asarray(weights)
        return np.column_stack([np.asarray(pts) * self.kernel_m, w / w.sum()])

    def render(self, heads: np.ndarray, heads_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(density per cell, velocity (H, W, 2) px/s) for heads now and ``RECORD_DT_S`` later.

        Each head's mass is spread on the ground over ``kernel_m`` and splatted bilinearly into the
        cells it lands in through the camera; mass beyond the image is lost, as for a counter.
        The velocity of a cell is its momentum over its mass: what optical flow spread over the
        density's blur would read (no optical-flow error is simulated).
        """
        gm = self.geometry.cameras["cam"].ground_map
        ok = np.all(np.isfinite(heads), axis=1) & np.all(np.isfinite(heads_next), axis=1)
        ok &= np.hypot(heads[:, 0], heads[:, 1]) < RENDER_RADIUS_M
        p, q = heads[ok], heads_next[ok]
        rows, cols = gm.shape
        width, height = gm.image_size
        mass = np.zeros(rows * cols)
        momentum = np.zeros((rows * cols, 2))
        if len(p):
            pattern = self._pattern
            pts = (p[:, None, :] + pattern[None, :, :2]).reshape(-1, 2)
            w = np.tile(pattern[:, 2], len(p))
            pi = apply(gm.ground_to_image, p)
            v = np.repeat((apply(gm.ground_to_image, q) - pi) / RECORD_DT_S, len(pattern), axis=0)
            img = apply(gm.ground_to_image, pts)
            x, y = img[:, 0] / gm.cell - 0.5, img[:, 1] / gm.cell - 0.5
            inside = np.isfinite(x) & np.isfinite(y) & (img[:, 0] >= 0) & (img[:, 0] < width) & \
                (img[:, 1] >= 0) & (img[:, 1] < height) & np.all(np.isfinite(v), axis=1)
            x, y = np.clip(x[inside], 0, cols - 1), np.clip(y[inside], 0, rows - 1)
            w, v = w[inside], v[inside]
            x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
            x1, y1 = np.minimum(x0 + 1, cols - 1), np.minimum(y0 + 1, rows - 1)
            fx, fy = x - x0, y - y0
            for rr, cc, f in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)),
                              (y1, x0, (1 - fx) * fy), (y1, x1, fx * fy)):
                idx = rr * cols + cc
                mass += np.bincount(idx, w * f, rows * cols)
                momentum[:, 0] += np.bincount(idx, w * f * v[:, 0], rows * cols)
                momentum[:, 1] += np.bincount(idx, w * f * v[:, 1], rows * cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            vel_cells = np.where(mass[:, None] > 1e-9, momentum / mass[:, None], 0.0).reshape(rows, cols, 2)
        density = mass.reshape(rows, cols)
        if self.noise > 0:
            density = self.rng.poisson(density * self.noise) / self.noise
        velocity = cv2.resize(vel_cells.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return density.astype(np.float32), velocity


def bottleneck_geometry(pose: CameraPose, gap_m: float, passage: Any = None) -> SiteGeometry:
    return build_site_geometry(parse_site(site_dict(pose, gap_m, passage)))
