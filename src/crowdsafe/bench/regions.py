"""What region-only inference saves on a site: per camera, region share and frames/s both ways.

The share alone overstates the gain (an engine has fixed costs per call, and a crop may need a
new compiled shape), so both paths are timed on the camera's own frame, with the engine the
site would run. A camera whose region is (nearly) its whole frame infers the full frame
(``counting.region.FULL_FRAME_SHARE``): its saving is reported as zero, not estimated.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.bench.frames import video_frame
from crowdsafe.bench.runner import time_calls
from crowdsafe.config.site import Site, load_site
from crowdsafe.counting import batch
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.region import RegionCounter
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.runtime.counters import CameraCounters


@dataclass
class RegionRow:
    camera: str
    width: int
    height: int
    #: The inferred crop [x0, y0, x1, y1] pixels, or None where the whole frame is inferred.
    crop: list[int] | None
    region_share: float  # crop pixels / frame pixels (1.0 for the whole frame)
    fps_full: float
    fps_region: float
    saving_pct: float  # 100 x (1 - region s/frame / full s/frame)


def camera_frame(site: Site, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The camera's first frame at ``size`` (its own size when None); the bundled video's where it
    cannot be read."""
    capture = cv2.VideoCapture(str(site.resolve_source(site.cameras[index])))
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    frame = frame if ok and frame is not None else video_frame()
    if size is None or frame.shape[1::-1] == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def seconds_per_frame(counter: Counts, frame: np.ndarray, repeats: int) -> float:
    """Median wall seconds of ``counter.count`` after one untimed call (engine compile, caches)."""
    return statistics.median(time_calls(lambda: counter.count(frame), repeats, warmup=1))


def region_bench(site_path: Path, spec: EngineSpec, repeats: int = 3,
                 factory: Callable[[EngineSpec], Counts] = batch.make_counter) -> list[RegionRow]:
    """One row per camera of the site (frame sizes from the calibration, else the camera's frame)."""
    site = load_site(site_path)
    sizes = {cam.id: cam.calibration.image_size or camera_frame(site, i).shape[1::-1]
             for i, cam in enumerate(site.cameras)}
    geometry = build_site_geometry(site, sizes)
    counters = CameraCounters(geometry, spec, factory)
    rows = []
    for i, cam in enumerate(site.cameras):
        width, height = geometry.cameras[cam.id].ground_map.image_size
        frame = camera_frame(site, i, (width, height))
        counter = counters.for_camera(cam.id)
        full = counter.inner if isinstance(counter, RegionCounter) else counter
        full_s = seconds_per_frame(full, frame, repeats)
        region = counters.regions.get(cam.id)
        region_s = seconds_per_frame(counter, frame, repeats) if region is not None else full_s
        crop = None if region is None else region[1]
        rows.append(RegionRow(cam.id, width, height,
                              None if crop is None else [crop.x0, crop.y0, crop.x1, crop.y1],
                              1.0 if crop is None else crop.pixels / (width * height),
                              1.0 / full_s, 1.0 / region_s, 100.0 * (1.0 - region_s / full_s)))
    return rows


def as_dicts(rows: list[RegionRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
