"""The Ray runner against the local runner on the same machine: throughput and per-frame overhead.

    python benchmarks/bench_ray.py [--cameras 2] [--every 0.5] [--seconds 60] [--precision int8]
                                   [--scale 1.0] [--encoding jpeg] [--json OUT]
    python benchmarks/bench_ray.py --store-rate [--seconds 20]   # PostgreSQL write rate
    python benchmarks/bench_ray.py --wire [--precision int8]      # bytes and count drift per encoding
    python benchmarks/bench_ray.py --gpu                          # on a GPU machine: 720p fps, drift

Both runners serve the same site: ``--cameras`` copies of the demo camera, each playing the
bundled PETS clip (768x576 at ``--scale`` 1) looped as a live feed, sampled every ``--every``
seconds, a period short enough that the engine, not the cameras, is the limit. Throughput is
frames measured per second between the first and the last frame after a warm-up (the first
``--warmup`` frames, which include engine compilation), so both runners are compared at their
steady rate.

- local: the local runner (``local_runner``) with one engine using every core (its default);
- ray: the runner counting on Ray (``RayCounting``) on a local Ray started here
  (``ray.init(num_cpus=<cores>)``), one per-core
  replica per CPU (its default), frames over the wire as ``--encoding``.

``--store-rate`` measures what the store sustains on a real throwaway PostgreSQL cluster
(Debian's ``postgresql``, started like the tests' one but with ``fsync`` and
``synchronous_commit`` on, as in production): zone readings written through ``Store.write`` as
the runner writes them, one transaction per frame (3 zone rows), and in batches of 500 rows
(what a writer behind an outage, or a per-site writer under load, sends), from 1 and 4
concurrent writers.

Per-frame overhead is the driver's round trip (dispatch to density back) minus the inference
time measured inside the replica: wire encode/decode, object transfer, scheduling. Bytes per
frame are the encoded image plus the flow pair. Report ``uptime`` with the numbers: the CPU
may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter, EveryCamera
from crowdsafe.counting.engines import EngineSpec, create_engine
from crowdsafe.runtime.background import BackgroundPolicy
from crowdsafe.runtime.core import RunnerConfig, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.pipeline import FrameOutput
from crowdsafe.store.store import open_store

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
VIDEO = DEMO.parent / "vtest.avi"


def site_file(folder: Path, cameras: int, every: float, scale: float) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    cam = data["cameras"][0]
    cam["source"] = str(VIDEO)
    cam["sampling"] = {"every": f"{every}s"}
    if scale != 1.0:
        cal = cam["calibration"]
        cal["image_size"] = [round(v * scale) for v in cal["image_size"]]
        cal["image_points"] = [[u * scale, v * scale] for u, v in cal["image_points"]]
        cal["focal_px"] *= scale
        cal["principal_point"] = [v * scale for v in cal["principal_point"]]
    data["cameras"] = []
    for i in range(cameras):
        copy = yaml.safe_load(yaml.safe_dump(cam))
        copy["id"] = f"cam{i:02d}"
        data["cameras"].append(copy)
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Clock:
    """Completion times of frames, for a steady-state rate after the warm-up."""

    def __init__(self) -> None:
        self.done: list[float] = []

    def __call__(self, _output: FrameOutput) -> None:
        self.done.append(time.monotonic())

    def rate(self, warmup: int) -> float:
        times = self.done[warmup:]
        if len(times) < 2:
            return float("nan")
        return (len(times) - 1) / (times[-1] - times[0])


def config(folder: Path, seconds: float) -> RunnerConfig:
    return RunnerConfig(state_dir=folder / "state", duration_s=seconds, health_every_s=5.0,
                        background=BackgroundPolicy(enabled=False))


def run_local(site: Path, folder: Path, spec: EngineSpec, seconds: float, warmup: int) -> dict[str, object]:
    clock = Clock()
    counter = DensityCounter(create_engine(spec))
    runner = local_runner(prepare_site(load_site(site)), open_store(folder / "local.sqlite"),
                          EveryCamera(counter), config(folder, seconds), on_frame=clock)
    summary = runner.run()
    return {"frames": summary.frames_total, "fps_steady": clock.rate(warmup), "fps_run": summary.fps,
            "dropped": sum(summary.dropped.values()), "errors": summary.errors}


def run_ray(site: Path, folder: Path, spec: EngineSpec, seconds: float, warmup: int,
            encoding: str, replicas: int | None = None, replica_cpus: float = 1.0) -> dict[str, object]:
    import ray

    from crowdsafe.runtime.ray.runner import RayConfig, RayCounting, ray_runner

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    try:
        clock = Clock()
        prepared = prepare_site(load_site(site))
        counting = RayCounting(prepared, spec, RayConfig(encoding=encoding, replicas=replicas,  # type: ignore[arg-type]
                                                         replica_cpus=replica_cpus))
        runner = ray_runner(prepared, open_store(folder / "ray.sqlite"), counting, config(folder, seconds),
                            on_frame=clock)
        summary = runner.run()
    finally:
        ray.shutdown()
    st = counting.stats
    return {"frames": summary.frames_total, "fps_steady": clock.rate(warmup), "fps_run": summary.fps,
            "dropped": sum(summary.dropped.values()), "errors": summary.errors,
            "replicas": len(st.replicas), "bytes_per_frame": round(st.bytes_per_frame),
            "infer_s_per_frame": st.infer_s / max(st.frames, 1),
            "overhead_ms_per_frame": 1000 * st.overhead_per_frame_s,
            "decode_ms_per_frame": 1000 * st.decode_s / max(st.frames, 1),
            "measure_ms_per_frame": 1000 * st.measure_s / max(st.frames, 1)}


def store_rate(seconds: float) -> dict[str, object]:
    """Rows/s and transactions/s into zone_readings on a real PostgreSQL with durable commits."""
    import shutil
    import subprocess
    import threading

    from crowdsafe.bench.postgres import free_port, pg_bin, run_as_postgres

    bindir = pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
    tmp = Path(tempfile.mkdtemp(prefix="crowdsafe-pgbench-"))
    run_as = run_as_postgres()
    if run_as:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    data, port = tmp / "data", free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"),
                    "-w", "start"], check=True, capture_output=True)
    out: dict[str, object] = {}
    try:
        store = open_store(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        clock = [1.0e9]
        lock = threading.Lock()

        def rows(n: int) -> list[dict[str, object]]:
            with lock:
                clock[0] += 1.0
                t = clock[0]
            return [{"zone_id": f"z{i % 3}-{i // 3}", "ts": t, "count": 12.5, "area_m2": 40.0,
                     "density": 0.31, "los": "B", "risk": "normal", "coverage_pct": 100.0} for i in range(n)]

        for batch in (3, 500):
            for writers in (1, 4):
                done = [0, 0]

                def work(deadline: float, batch: int = batch, done: list[int] = done) -> None:
                    while time.monotonic() < deadline:
                        n = store.write("zone_readings", rows(batch))
                        with lock:
                            done[0] += n
                            done[1] += 1

                deadline = time.monotonic() + seconds / 4
                started = time.monotonic()
                threads = [threading.Thread(target=work, args=(deadline,)) for _ in range(writers)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                spent = time.monotonic() - started
                key = f"batch{batch}_writers{writers}"
                out[key] = {"rows_per_s": round(done[0] / spent),
                            "transactions_per_s": round(done[1] / spent)}
                print(key, out[key], flush=True)
        store.close()
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def wire_cost(precision: str, frames: int = 5) -> dict[str, object]:
    """Bytes, encode/decode time and count drift of each wire encoding on real 768x576 frames."""
    import cv2
    import numpy as np

    from crowdsafe.runtime.ray.wire import decode_image, encode_image

    cap = cv2.VideoCapture(str(VIDEO))
    images = []
    for i in range(frames * 80):
        ok, frame = cap.read()
        if ok and i % 80 == 0:
            images.append(frame)
    cap.release()
    counter = DensityCounter(create_engine(EngineSpec(precision=precision)))  # type: ignore[arg-type]
    direct = [counter.count(im).count for im in images]
    out: dict[str, object] = {"frames": len(images), "mean_count": float(np.mean(direct)),
                              "raw_bytes": images[0].nbytes}
    for name, encoding, quality in (("jpeg80", "jpeg", 80), ("jpeg90", "jpeg", 90), ("jpeg95", "jpeg", 95),
                                    ("png", "png", 0)):
        sizes, drift, enc_s, dec_s = [], [], [], []
        for im, d in zip(images, direct, strict=True):
            t0 = time.perf_counter()
            payload = encode_image(im, encoding, quality)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            back = decode_image(payload, encoding)  # type: ignore[arg-type]
            t2 = time.perf_counter()
            sizes.append(len(payload))  # type: ignore[arg-type]
            enc_s.append(t1 - t0)
            dec_s.append(t2 - t1)
            drift.append((counter.count(back).count - d) / d)
        out[name] = {"bytes": round(float(np.mean(sizes))), "encode_ms": 1000 * float(np.median(enc_s)),
                     "decode_ms": 1000 * float(np.median(dec_s)),
                     "drift_mean_pct": 100 * float(np.mean(drift)),
                     "drift_max_abs_pct": 100 * float(np.max(np.abs(drift)))}
        print(name, out[name], flush=True)
    return out


def gpu_figures(batches: tuple[int, ...] = (1, 8, 32), repeats: int = 5) -> dict[str, object]:
    """720p frames/s at each batch size in fp32 and fp16 on the CUDA EP, and fp16's count drift.

    Needs ``onnxruntime-gpu`` and a GPU; elsewhere it stops with the reason. Frames are the
    bundled clip resized to 1280x720, the same for every configuration.
    """
    import cv2
    import numpy as np

    from crowdsafe.counting.counter import to_batch
    from crowdsafe.counting.engines import EngineUnavailable
    from crowdsafe.runtime.ray.gpu import CudaEngine

    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < max(batches):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_LINEAR))
    cap.release()
    out: dict[str, object] = {}
    counts: dict[str, np.ndarray] = {}
    for precision in ("fp32", "fp16"):
        try:
            engine = CudaEngine(precision)  # type: ignore[arg-type]
        except EngineUnavailable as exc:
            raise SystemExit(f"no GPU path here: {exc}") from None
        for n in batches:
            batch = np.concatenate([to_batch(f) for f in frames[:n]])
            engine.infer(batch)  # warm-up: cuDNN algorithm choice, allocation
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                density = engine.infer(batch)
                times.append(time.perf_counter() - t0)
            out[f"{precision}_batch{n}_fps"] = n / float(np.median(times))
            print(precision, n, f"{out[f'{precision}_batch{n}_fps']:.1f} frames/s", flush=True)
            if n == max(batches):
                counts[precision] = density.reshape(n, -1).sum(axis=1)
    drift = np.abs(counts["fp16"] - counts["fp32"]).sum() / counts["fp32"].sum()
    out["fp16_count_drift_pct"] = 100 * float(drift)
    print(f"fp16 count drift vs fp32: {out['fp16_count_drift_pct']:.3f} %", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--precision", default="int8", choices=("fp32", "int8", "bf16"))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--encoding", default="jpeg", choices=("raw", "jpeg", "png"))
    parser.add_argument("--only", choices=("local", "ray"))
    parser.add_argument("--ray-replicas", type=int, help="default: one per CPU")
    parser.add_argument("--ray-replica-cpus", type=float, default=1.0,
                        help="CPUs (engine threads) per replica")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--store-rate", action="store_true", help="measure PostgreSQL write rate instead")
    parser.add_argument("--wire", action="store_true", help="measure wire encodings instead")
    parser.add_argument("--gpu", action="store_true", help="measure the CUDA path instead (needs a GPU)")
    args = parser.parse_args(argv)
    if args.gpu:
        figures = gpu_figures()
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    if args.wire:
        cost = wire_cost(args.precision)
        if args.json:
            args.json.write_text(json.dumps(cost, indent=2))
        return 0
    if args.store_rate:
        rates = store_rate(args.seconds)
        if args.json:
            args.json.write_text(json.dumps(rates, indent=2))
        return 0
    result: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()},
                                 "cores": os.cpu_count(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        site = site_file(folder, args.cameras, args.every, args.scale)
        if args.only != "ray":
            result["local"] = run_local(site, folder, EngineSpec(precision=args.precision), args.seconds,
                                        args.warmup)
            print("local:", json.dumps(result["local"]), flush=True)
        if args.only != "local":
            result["ray"] = run_ray(site, folder, EngineSpec(precision=args.precision), args.seconds,
                                    args.warmup, args.encoding, args.ray_replicas, args.ray_replica_cpus)
            print("ray:", json.dumps(result["ray"]), flush=True)
    result["load_after"] = os.getloadavg()
    if "local" in result and "ray" in result:
        local_fps = result["local"]["fps_steady"]  # type: ignore[index]
        ray_fps = result["ray"]["fps_steady"]  # type: ignore[index]
        result["ray_vs_local"] = ray_fps / local_fps if local_fps else float("nan")
        print(f"ray / local steady throughput: {result['ray_vs_local']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
