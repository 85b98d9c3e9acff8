"""How many 720p cameras one machine keeps up with at one frame every 5 s, and memory per camera.

    python benchmarks/bench_cameras.py [--every 5] [--seconds 90] [--fps 25] [--precision auto] [--json OUT]

What runs is the real local runner (``runtime.local.local_runner``: one reader thread per camera decoding its
feed in real time, one inference worker, the store writer, alerts, backgrounds) over a SQLite
store, with every camera playing a 1280x720 copy of the bundled PETS 2009 clip (written once
to a temporary folder, MPEG-4 at ``--fps``) looped as a live feed, calibrated like the demo site.

1. Precision: with ``--precision auto`` each of fp32, bf16 and int8 counts the same 720p frame
   a few times; the fastest whose count stays within 5 % of fp32 is used ("fastest accurate").
2. Capacity estimate: one camera runs for a while; the mean time the worker spends per frame
   (count, zones, lines, background) gives ``floor(every / time)`` cameras.
3. Check: the runner runs with that many cameras, then one more, for ``--seconds`` each. A
   camera count is sustained when samples are not dropped (the worker took every sample before
   the next one replaced it) and readings are at most one period old.
4. Memory: resident set size (VmRSS, not peak) after each run; per camera = the slope between
   the runs' camera counts.
5. CPU budget, which holds on a shared machine too (wall-clock results do not: other work takes
   the cores): process CPU seconds per 720p inference, and per second of one camera's reading
   (3 readers decoding their feeds, no inference). Cameras by CPU = cores x every / (inference
   + every x reading): what an otherwise idle machine of this kind would sustain, if inference
   used every core fully; the wall-clock check above is the measured figure.

Report the machine's load with the numbers (``uptime`` before and after): the CPU may be shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import yaml

from crowdsafe.bench.machine import rss_mb
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter, EveryCamera
from crowdsafe.counting.engines import EngineSpec, EngineUnavailable, create_engine
from crowdsafe.runtime.camera import CameraReader, Sample
from crowdsafe.runtime.core import RunnerConfig, RunSummary, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.store import open_store

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
VIDEO = DEMO.parent / "vtest.avi"
SIZE = (1280, 720)



def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def make_clip(folder: Path, fps: float, seconds: float = 40.0) -> Path:
    """The bundled clip resized to 1280x720 (the PETS frames are 4:3, so this stretches them)."""
    path = folder / "vtest_720p.avi"
    cap = cv2.VideoCapture(str(VIDEO))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    for _ in range(int(seconds * fps)):
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        writer.write(cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR))
    writer.release()
    cap.release()
    return path


def site_file(folder: Path, clip: Path, cameras: int, every: float) -> Path:
    """The demo site with ``cameras`` copies of its camera, calibration scaled to 1280x720."""
    data = yaml.safe_load(DEMO.read_text())
    template = data["cameras"][0]
    sx, sy = SIZE[0] / 768, SIZE[1] / 576
    cal = template["calibration"]
    cal["image_size"] = list(SIZE)
    cal["image_points"] = [[u * sx, v * sy] for u, v in cal["image_points"]]
    cal.pop("focal_px", None)  # non-square scaling: let the homography estimate it
    cal.pop("principal_point", None)
    template.pop("model", None)
    data["cameras"] = [{**template, "id": f"cam{i:02d}", "source": str(clip),
                        "sampling": {"every": f"{every}s"}} for i in range(cameras)]
    path = folder / f"site_{cameras}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def frame_720p() -> np.ndarray:
    cap = cv2.VideoCapture(str(VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 400)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR)


def choose_precision(threads: int | None) -> tuple[str, list[dict]]:
    """The fastest precision counting within 5 % of fp32 on a real 720p frame."""
    image = frame_720p()
    rows = []
    for precision in ("fp32", "bf16", "int8"):
        try:
            counter = DensityCounter(create_engine(EngineSpec(precision=precision, threads=threads)))
        except EngineUnavailable as exc:
            rows.append({"precision": precision, "available": False, "reason": str(exc)})
            continue
        counter.count(image)  # warm-up (compilation, caches)
        times, count = [], 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            count = counter.count(image).count
            times.append(time.perf_counter() - t0)
        rows.append({"precision": precision, "available": True, "engine": counter.engine.name,
                     "seconds_per_frame": round(statistics.median(times), 3), "count": round(count, 2)})
        del counter
        gc.collect()
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    for r in rows:
        if r.get("available"):
            r["drift_vs_fp32"] = round(abs(r["count"] - fp32["count"]) / max(fp32["count"], 1e-6), 4)
    accurate = [r for r in rows if r.get("available") and r["drift_vs_fp32"] <= 0.05]
    return min(accurate, key=lambda r: r["seconds_per_frame"])["precision"], rows


def run(folder: Path, clip: Path, cameras: int, every: float, seconds: float,
        counter: DensityCounter) -> dict:
    site = site_file(folder, clip, cameras, every)
    state = folder / f"state_{cameras}"
    state.mkdir(exist_ok=True)
    store = open_store(state / "crowdsafe.sqlite")
    latencies: list[float] = []
    processing: list[float] = []

    def on_frame(output: object) -> None:
        processing.append(sum(output.timings.values()))  # type: ignore[attr-defined]
        latencies.append(time.time() - output.ts)  # type: ignore[attr-defined]

    prepared = prepare_site(load_site(site))
    runner = local_runner(prepared, store, EveryCamera(counter),
                          RunnerConfig(state_dir=state, duration_s=seconds, health_every_s=10),
                          on_frame=on_frame)
    load_before = load_average()
    cpu0 = os.times()
    summary: RunSummary = runner.run()
    cpu1 = os.times()
    resident = rss_mb()
    store.close()
    offered = sum(s.offered for s in runner.slots.stats.values())
    dropped = sum(summary.dropped.values())
    # the first samples wait for the engine's first (slowest) frames; judge the steady part
    steady = latencies[len(latencies) // 4:] or latencies
    return {
        "cameras": cameras, "seconds": round(summary.seconds, 1), "frames": summary.frames_total,
        "samples_offered": offered, "samples_dropped": dropped,
        "drop_ratio": round(dropped / offered, 3) if offered else None,
        "frames_per_camera_per_min": round(summary.frames_total / cameras / summary.seconds * 60, 2),
        "target_per_camera_per_min": round(60 / every, 2),
        "processing_s_mean": round(statistics.fmean(processing), 3) if processing else None,
        "latency_s_p50": round(statistics.median(steady), 2) if steady else None,
        "latency_s_max": round(max(steady), 2) if steady else None,
        "errors": summary.errors, "rss_mb": round(resident, 1),
        "process_cpu_s_per_s": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system)
                                     / summary.seconds, 2),
        "load_before": load_before, "load_after": load_average(),
    }


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_budget(folder: Path, clip: Path, every: float, counter: DensityCounter) -> dict:
    image = frame_720p()
    t0, w0 = cpu_seconds(), time.perf_counter()
    for _ in range(5):
        counter.count(image)
    inference_cpu, inference_wall = (cpu_seconds() - t0) / 5, (time.perf_counter() - w0) / 5
    readers_n, seconds = 3, 20.0
    prepared = prepare_site(load_site(site_file(folder, clip, readers_n, every)))
    slots: LatestSlots[Sample] = LatestSlots()
    readers = [CameraReader(cam, slots) for cam in prepared.cameras]
    t0 = cpu_seconds()
    for reader in readers:
        reader.start()
    time.sleep(seconds)
    reading_cpu = (cpu_seconds() - t0) / (readers_n * seconds)
    fps = [r.health().fps for r in readers]
    for reader in readers:
        reader.stop()
    for reader in readers:
        reader.join(5)
    cores = os.cpu_count() or 1
    return {"inference_cpu_s_per_frame": round(inference_cpu, 3),
            "inference_wall_s_per_frame": round(inference_wall, 3),
            "reading_cpu_s_per_camera_s": round(reading_cpu, 4), "reader_fps": [round(f, 1) for f in fps],
            "cameras_by_cpu": math.floor(cores * every / (inference_cpu + every * reading_cpu))}


def sustained(result: dict, every: float) -> bool:
    """Every sample counted (or nearly: 1 in 20 may lose a race at a period boundary) in time."""
    return (result["drop_ratio"] is not None and result["drop_ratio"] <= 0.05
            and result["latency_s_p50"] is not None and result["latency_s_p50"] <= every)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=5.0, help="sampling period per camera, seconds")
    ap.add_argument("--seconds", type=float, default=90.0, help="length of each runner run")
    ap.add_argument("--fps", type=float, default=25.0, help="frame rate of the simulated cameras")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cameras", type=int, default=None, help="skip the estimate; check this many")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                 "load_at_start": load_average()},
                     "every_s": args.every, "camera_fps": args.fps, "frame": f"{SIZE[0]}x{SIZE[1]}"}
    precision = args.precision
    if precision == "auto":
        precision, results["precisions"] = choose_precision(args.threads)
    results["precision"] = precision
    counter = DensityCounter(create_engine(EngineSpec(precision=precision, threads=args.threads)))
    results["engine"] = counter.engine.name
    rss_engine = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = make_clip(folder, args.fps)
        counter.count(frame_720p())  # warm-up outside the measured runs
        one = run(folder, clip, 1, args.every, max(args.seconds / 2, 30), counter)
        results["one_camera"] = one
        estimate = args.cameras or max(1, math.floor(args.every / one["processing_s_mean"]))
        results["estimate"] = estimate
        checks = [run(folder, clip, n, args.every, args.seconds, counter) for n in (estimate, estimate + 1)]
        results["checks"] = checks
        ok = [c["cameras"] for c in checks if sustained(c, args.every)]
        results["cameras_sustained"] = max(ok) if ok else (1 if sustained(one, args.every) else 0)
        results["cpu_budget"] = cpu_budget(folder, clip, args.every, counter)
        a, b = one, checks[-1]
        results["rss_mb_engine_loaded"] = round(rss_engine, 1)
        results["rss_mb_per_camera"] = round((b["rss_mb"] - a["rss_mb"]) / (b["cameras"] - a["cameras"]), 1)
    results["machine"]["load_at_end"] = load_average()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    budget = results["cpu_budget"]
    print(f"{results['cameras_sustained']} cameras sustained at 1 frame / {args.every:g} s "
          f"({SIZE[0]}x{SIZE[1]}, "
          f"{results['engine']} {precision}, {one['processing_s_mean']} s per frame wall); by CPU time "
          f"{budget['cameras_by_cpu']} ({budget['inference_cpu_s_per_frame']} CPU-s per inference, "
          f"{budget['reading_cpu_s_per_camera_s']} CPU-s per camera-second of reading); "
          f"{results['rss_mb_per_camera']} MB per camera; load {results['machine']['load_at_start']} -> "
          f"{results['machine']['load_at_end']}", file=sys.stderr)


if __name__ == "__main__":
    main()
