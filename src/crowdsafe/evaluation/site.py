"""The whole site pipeline against annotated video: zones, lines and the count, end to end.

Why and how: docs/design-notes.md, ``crowdsafe.evaluation.site``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely

from crowdsafe.counting.counter import CountsCameras, DensityResult, EveryCamera
from crowdsafe.counting.tuning import CameraTuning
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.geometry.homography import apply
from crowdsafe.geometry.site import SiteGeometry
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import SitePlan, as_plan

#: Largest ground step (metres) between one frame's annotated foot point and the next frame's
#: for them to be the same person: 10x a brisk walk between frames at 10 fps.
MATCH_GATE_M = 1.5

FramePoints = dict[int, np.ndarray]


def load_frame_points(path: Path, names: Sequence[str] | None = None) -> FramePoints:
    """``{"<frame>": {"count": N, "points": [[x, y], ...]}}`` → {frame: (N, 2) pixels}.

    The keys are frame indices (a video's labels), or image file names (a crowd folder's
    ``labels.json``): with ``names``, the source's image files in the order it reads them, a
    name stands for its position there, so both kinds index the same frames.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotated points ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected {{\"<frame index>\": {{\"points\": [[x, y], ...]}}}}")
    position = {name: i for i, name in enumerate(names)} if names is not None else None
    out: FramePoints = {}
    for key, entry in data.items():
        try:
            frame = frame_of(key, position)
            pts = np.asarray(entry["points"] if isinstance(entry, dict) else entry, dtype=float)
        except (ValueError, TypeError, KeyError):
            raise DatasetError(f"{path}: entry {key!r} is not a frame index with a list of [x, y] "
                               "points") from None
        except LookupError as exc:
            raise DatasetError(f"{path}: entry {key!r}: {exc.args[0]}") from None
        pts = pts.reshape(-1, 2) if pts.size else np.zeros((0, 2))
        if frame < 0 or pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
            raise DatasetError(f"{path}: entry {key!r} is not a frame index with a list of [x, y] points")
        out[frame] = pts
    if not out:
        raise DatasetError(f"{path}: no annotated frames")
    return out


def frame_of(key: str, position: Mapping[str, int] | None) -> int:
    """A label key's frame index: the number itself, or an image file's place in the source."""
    try:
        return int(key)
    except ValueError:
        if position is None:
            raise LookupError("keyed by image file name, but the source is not an image folder "
                              "(file-name keys need the folder's images to place them)") from None
        if key not in position:
            raise LookupError("no such image in the source folder") from None
        return position[key]


def parse_frames(text: str | None, available: FramePoints) -> range:
    """``START:STOP[:STEP]`` (STOP exclusive, either may be empty) → frame range; default: all."""
    first, last = min(available), max(available) + 1
    if not text:
        return range(first, last)
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--frames {text!r}: expected START:STOP[:STEP], e.g. 0:795:5")
    try:
        start = int(parts[0]) if parts[0] else first
        stop = int(parts[1]) if parts[1] else last
        step = int(parts[2]) if len(parts) == 3 and parts[2] else 1
    except ValueError:
        raise ValueError(f"--frames {text!r}: START, STOP and STEP must be whole numbers") from None
    if step < 1 or start < 0 or stop <= start:
        raise ValueError(f"--frames {text!r}: need 0 <= START < STOP and STEP >= 1")
    return range(start, stop, step)


def rasterise(points: np.ndarray, shape: tuple[int, int], cell: int) -> np.ndarray:
    """One person per point, split bilinearly over the four nearest cell centres.

    Bilinear splatting keeps the map continuous in the point's position, so a point moving
    across a line moves its mass across smoothly (a nearest-cell splat would jump 8 px at a
    time and make the flux depend on where the jumps fall). Mass outside the grid is dropped,
    as a counter drops people outside the frame.
    """
    rows, cols = shape
    density = np.zeros(shape, np.float64)
    if len(points) == 0:
        return density.astype(np.float32)
    x = points[:, 0] / cell - 0.5
    y = points[:, 1] / cell - 0.5
    inside = (points[:, 0] >= 0) & (points[:, 0] < cols * cell) & (points[:, 1] >= 0) & \
        (points[:, 1] < rows * cell)
    x, y = np.clip(x[inside], 0, cols - 1), np.clip(y[inside], 0, rows - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, cols - 1), np.minimum(y0 + 1, rows - 1)
    fx, fy = x - x0, y - y0
    for rr, cc, w in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)),
                      (y1, x0, (1 - fx) * fy), (y1, x1, fx * fy)):
        np.add.at(density, (rr, cc), w)
    return density.astype(np.float32)


class PointsCounter:
    """A counter that returns the annotated points of the current frame as a density map.

    The evaluation loop sets ``frame`` before each sample; the image itself is ignored, which
    is the point: it separates geometry and flow errors from the counter's.
    """

    def __init__(self, points: FramePoints, cell: int = 8) -> None:
        self.points = points
        self.cell = cell
        self.frame: int | None = None

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        h, w = image_bgr.shape[:2]
        pts = self.points.get(self.frame, np.zeros((0, 2))) if self.frame is not None else np.zeros((0, 2))
        density = rasterise(pts, (h // self.cell, w // self.cell), self.cell)
        return DensityResult(density=density, image_height=h, image_width=w, cell=self.cell, model="points")


def match_points(before: np.ndarray, after: np.ndarray, gate: float) -> dict[int, int]:
    """Indices i → j of points of ``before`` and ``after`` at most ``gate`` apart, closest first,
    each point used once (the dict keeps that order)."""
    if len(before) == 0 or len(after) == 0:
        return {}
    dist = np.hypot(*(before[:, None, :] - after[None, :, :]).transpose(2, 0, 1))
    dist = np.where(np.isfinite(dist), dist, np.inf)
    out: dict[int, int] = {}
    taken: set[int] = set()
    for flat in np.argsort(dist, axis=None):
        i, j = divmod(int(flat), dist.shape[1])
        if dist[i, j] > gate:
            break
        if i not in out and j not in taken:
            out[i] = j
            taken.add(j)
    return out


def match_steps(before: np.ndarray, after: np.ndarray, gate_m: float = MATCH_GATE_M
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs (p, q) of ground points of consecutive frames, closest first, each point used once."""
    return [(before[i], after[j]) for i, j in match_points(before, after, gate_m).items()]


def crossing(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, normal: np.ndarray) -> int:
    """+1 if the step p→q crosses segment a–b the way ``normal`` points, −1 the other way, else 0.

    A step that ends exactly on the line counts, one that starts on it does not, so a person
    pausing on the line is counted once.
    """
    d = b - a
    side_p = float(np.dot(p - a, normal))
    side_q = float(np.dot(q - a, normal))
    if not (side_p < 0 <= side_q or side_q < 0 <= side_p):
        return 0
    t = side_p / (side_p - side_q) if side_p != side_q else 0.0
    x = p + t * (q - p)
    along = float(np.dot(x - a, d)) / float(np.dot(d, d))
    if not 0.0 <= along <= 1.0:
        return 0
    return 1 if side_q >= 0 > side_p else -1


@dataclass
class ZoneScore:
    truth: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        t, m = np.asarray(self.truth, float), np.asarray(self.measured, float)
        n = len(t)
        total_t, total_m = float(t.sum()), float(m.sum())
        return {"n": n, "truth_mean": float(t.mean()) if n else None,
                "measured_mean": float(m.mean()) if n else None,
                "mae": float(np.abs(m - t).mean()) if n else None,
                "bias_pct": 100.0 * (total_m - total_t) / total_t if total_t > 0 else None,
                "truth_total": total_t, "measured_total": total_m}


@dataclass
class SiteEvaluation:
    """Everything scored; ``as_dict`` is the ``--json`` shape of ``crowdsafe eval-site``."""

    camera_id: str
    frames: range
    fps: float
    zones: dict[str, ZoneScore]
    lines: dict[str, dict[str, float]]
    count_truth: list[float]
    count_measured: list[float]
    counter: str
    #: (low, high) of each scored frame's count; None where the counter gave no interval.
    count_intervals: list[tuple[float, float] | None] = field(default_factory=list)
    tuning: str | None = None

    def coverage90(self) -> float | None:
        """Share of scored frames whose annotated count lies in the frame's 90 % interval."""
        if not self.count_intervals or any(i is None for i in self.count_intervals):
            return None
        inside = [lo <= t <= hi for t, (lo, hi) in zip(self.count_truth, self.count_intervals,  # type: ignore[misc]
                                                       strict=True)]
        return float(np.mean(inside))

    def as_dict(self) -> dict[str, Any]:
        t, m = np.asarray(self.count_truth, float), np.asarray(self.count_measured, float)
        return {
            "zones": {zid: score.as_dict() for zid, score in self.zones.items()},
            "lines": self.lines,
            "count": {"n": len(t), "mae": float(np.abs(m - t).mean()) if len(t) else None,
                      "bias": float((m - t).mean()) if len(t) else None,
                      "truth_mean": float(t.mean()) if len(t) else None,
                      "measured_mean": float(m.mean()) if len(t) else None,
                      "coverage90": self.coverage90()},
            "meta": {"camera": self.camera_id, "fps": self.fps, "counter": self.counter,
                     "frames": [self.frames.start, self.frames.stop, self.frames.step],
                     "tuning": self.tuning},
        }


def truth_crossings(geometry: SiteGeometry, camera_id: str, feet: FramePoints, frames: range
                    ) -> dict[str, dict[str, float]]:
    """Annotated in/out crossings of every site line between consecutive frames of the range."""
    fit = geometry.cameras[camera_id].fit
    out: dict[str, dict[str, float]] = {}
    first, last = frames.start, frames[-1] if len(frames) else frames.start
    ground = {k: apply(fit.matrix, pts) for k, pts in feet.items() if first <= k <= last}
    for line in geometry.site.lines:
        a, b = np.asarray(line.a, float), np.asarray(line.b, float)
        normal = np.asarray(line.positive_normal(), float)
        n_in = n_out = 0
        for k in range(first, last):
            if k not in ground or k + 1 not in ground:
                continue
            for p, q in match_steps(ground[k], ground[k + 1]):
                if np.all(np.isfinite(p)) and np.all(np.isfinite(q)):
                    c = crossing(p, q, a, b, normal)
                    n_in += c > 0
                    n_out += c < 0
        out[line.id] = {"truth_in": n_in, "truth_out": n_out}
    return out


def truth_in_zones(geometry: SiteGeometry, camera_id: str, feet: np.ndarray) -> dict[str, int]:
    """Annotated people per zone, each placed by the floor point under their feet."""
    ground = apply(geometry.cameras[camera_id].fit.matrix, feet)
    ok = np.all(np.isfinite(ground), axis=1)
    pts = shapely.points(ground[ok])
    return {zid: int(shapely.contains(zg.polygon, pts).sum()) for zid, zg in geometry.zones.items()}


def folder_images(path: str) -> list[Path] | None:
    """The image files of a folder source in the order it reads them (natural name order);
    None when ``path`` is not a folder (a video file or a stream)."""
    if "://" in path or not Path(path).is_dir():
        return None
    from crowdsafe.sources.frames import SourceError
    from crowdsafe.sources.images import FolderSource

    try:
        return list(FolderSource(Path(path)).files)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None


def read_pairs(path: str, frames: range,
               folder_fps: float = 1.0) -> Iterator[tuple[int, np.ndarray, np.ndarray | None, float]]:
    """(index, frame, the frame after it, fps) for each frame of ``frames``, decoding in order.

    An image folder is read as a video whose frames are its images in name order, at
    ``folder_fps`` (a folder has no frame rate; flow is then measured per that interval).
    """
    files = folder_images(path)
    if files is not None:
        yield from _folder_pairs(files, frames, folder_fps)
        return
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise DatasetError(f"{path}: cannot open the camera's video (eval-site needs a video file source)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not fps > 0:
        cap.release()
        raise DatasetError(f"{path}: the video has no frame rate; flow needs one")
    try:
        index, current = -1, None
        wanted = iter(frames)
        target = next(wanted, None)
        while target is not None:
            while index < target:
                ok, current = cap.read()
                index += 1
                if not ok:
                    return
            ok, nxt = cap.read()
            index += 1
            pair = nxt if ok else None
            yield target, current, pair, float(fps)
            target = next(wanted, None)
            current = pair
            if pair is None:
                return
    finally:
        cap.release()


def _folder_pairs(files: list[Path], frames: range,
                  fps: float) -> Iterator[tuple[int, np.ndarray, np.ndarray | None, float]]:
    from crowdsafe.sources.images import read_image

    for index in frames:
        if index >= len(files):
            return
        pair = read_image(files[index + 1]) if index + 1 < len(files) else None
        yield index, read_image(files[index]), pair, fps


def evaluate_site(plan: SitePlan | SiteGeometry, camera_id: str, video: str, feet: FramePoints, frames: range,
                  counter: CountsCameras | None, *, heads: FramePoints | None = None,
                  on_frame: Callable[[int], None] | None = None,
                  tunings: dict[str, CameraTuning] | None = None,
                  folder_fps: float = 1.0) -> SiteEvaluation:
    """Run ``FramePipeline`` on ``frames`` of the camera's video and score it against ``feet``.

    With ``heads`` (``density_from``), the annotated heads replace the counter (give None), and
    no tuning applies. ``tunings`` default: the plan's (given only geometry: the tuning files the
    site names).
    """
    plan = as_plan(plan, {} if heads is not None else tunings)
    geometry = plan.geometry
    if camera_id not in geometry.cameras:
        raise ValueError(f"--camera {camera_id!r}: the site has {', '.join(geometry.cameras)}")
    missing = [k for k in frames if k not in feet]
    if len(missing) == len(frames):
        raise DatasetError(f"no frame of {frames.start}:{frames.stop}:{frames.step} is annotated")
    points = PointsCounter(heads) if heads is not None else None
    counting = EveryCamera(points) if points is not None else counter
    if counting is None:
        raise ValueError("evaluate_site needs a counter, or heads to count instead")
    pipeline = FramePipeline(plan, counting)
    zones = {zid: ZoneScore() for zid in geometry.zones}
    rates: dict[str, list[float]] = {ln.id: [0.0, 0.0] for ln in geometry.site.lines}
    count_t: list[float] = []
    count_m: list[float] = []
    count_i: list[tuple[float, float] | None] = []
    fps = 0.0
    evaluated = 0
    for index, image, pair, fps in read_pairs(video, frames, folder_fps):
        if points is not None:
            points.frame = index
        sample = Sample(camera_id, ts=index / fps, image=image, pair=pair,
                        pair_dt=1.0 / fps if pair is not None else None, frame_index=index)
        output = pipeline.process(sample)
        evaluated += 1
        dt = frames.step / fps
        for row in output.line_rows:
            period = float(row["period_s"])  # type: ignore[arg-type]
            rates[str(row["line_id"])][0] += float(row["in_count"]) / period * dt  # type: ignore[arg-type]
            rates[str(row["line_id"])][1] += float(row["out_count"]) / period * dt  # type: ignore[arg-type]
        if index in feet:
            truth = truth_in_zones(geometry, camera_id, feet[index])
            measured = {r.zone_id: r.count for r in output.zones}
            for zid, score in zones.items():
                score.truth.append(float(truth[zid]))
                score.measured.append(float(measured.get(zid, 0.0)))
            count_t.append(float(len(feet[index])))
            count_m.append(output.count)
            count_i.append(output.interval)
        if on_frame is not None:
            on_frame(index)
    if evaluated == 0:
        raise DatasetError(f"{video}: no frame of {frames.start}:{frames.stop}:{frames.step} could be read")
    lines = truth_crossings(geometry, camera_id, feet, frames)
    for lid, (m_in, m_out) in rates.items():
        lines[lid].update({"measured_in": m_in, "measured_out": m_out})
    describe = getattr(counter, "describe", None)
    name = "points" if points is not None else describe() if describe else "counter"
    tuning = pipeline.tunings.get(camera_id)
    return SiteEvaluation(camera_id, frames, fps, zones, lines, count_t, count_m, name, count_i,
                          None if tuning is None else tuning.source or "given")


def format_pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1f} %"


def flow_error_pct(measured: float, truth: float) -> float | None:
    return 100.0 * (measured - truth) / truth if truth > 0 else None


def summary_rows(result: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Rows for a printed table: zone / line / whole frame."""
    rows: list[tuple[str, ...]] = []
    for zid, z in result["zones"].items():
        rows.append((f"zone {zid}", f"{z['truth_mean']:.3f}", f"{z['measured_mean']:.3f}", f"{z['mae']:.3f}",
                     format_pct(z["bias_pct"])))
    for lid, ln in result["lines"].items():
        for way in ("in", "out"):
            t, m = ln[f"truth_{way}"], ln[f"measured_{way}"]
            rows.append((f"line {lid} {way}", f"{t}", f"{m:.1f}", "", format_pct(flow_error_pct(m, t))))
    c = result["count"]
    rows.append(("whole frame", f"{c['truth_mean']:.3f}", f"{c['measured_mean']:.3f}", f"{c['mae']:.3f}",
                 f"{c['bias']:+.3f}"))
    if c.get("coverage90") is not None:
        rows.append(("whole frame, 90 % interval coverage", "", f"{100 * c['coverage90']:.1f} %", "", ""))
    return rows
