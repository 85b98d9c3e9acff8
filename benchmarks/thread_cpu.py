"""CPU per frame of each thread of ``bench --site``'s pipeline: which stage takes the engine's cores.

    python benchmarks/thread_cpu.py [SITE.yaml] [--seconds 30] [--json OUT]

The site's first camera is counted engine-only on its sampled frames for ``--seconds``, then the
whole pipeline runs for as long, exactly as one slice of ``crowdsafe bench --site`` (the same
functions: ``bench.site.engine_only`` and ``bench.site._pipeline``). Every thread's CPU clock is read
from ``/proc/self/task`` (Linux) before and after the pipeline, and named from Python's threads
(``inference``, ``measure``, ``reader-<camera>``, ``store-writer``); threads Python did not start
(the engine's own workers) keep their OS name. On two cores that the engine keeps busy, every
millisecond another thread takes is shared with the engine: the list says where to look.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from crowdsafe.bench import site as bench_site
from crowdsafe.bench.machine import machine_info
from crowdsafe.config.site import load_site
from crowdsafe.counting import batch
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.precision import default_precision
from crowdsafe.runtime.core import prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.pipeline import FrameFit

DEMO_SITE = Path(__file__).resolve().parents[1] / "src" / "crowdsafe" / "data" / "demo_site.yaml"


class ThreadClocks:
    """Each thread's CPU seconds, by name, sampled while it is alive (threads end with the run)."""

    def __init__(self) -> None:
        self.cpu: dict[int, tuple[str, float]] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names[thread.native_id] = thread.name
        for tid in os.listdir("/proc/self/task"):
            try:
                stat = Path(f"/proc/self/task/{tid}/stat").read_text()
                comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            except OSError:  # the thread ended between listing and reading
                continue
            fields = stat.rsplit(")", 1)[1].split()
            self.cpu[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / self._tick)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.5):
                self.read()
        threading.Thread(target=loop, name="thread-clock", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.read()

    def by_name(self, before: dict[int, tuple[str, float]]) -> Counter[str]:
        spent: Counter[str] = Counter()
        for tid, (comm, seconds) in self.cpu.items():
            spent[self.names.get(tid, comm)] += seconds - before.get(tid, (comm, 0.0))[1]
        return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", nargs="?", type=Path, default=DEMO_SITE)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    site = load_site(args.site)
    precision, _why = default_precision()
    spec = EngineSpec(engine="auto", precision=precision)
    base = prepare_site(site, loop=True)
    counters = CameraCounters(base.plan, spec, batch.make_counter)
    camera = site.cameras[0].id
    frames = bench_site.sampled_frames(site, 0, FrameFit(base.geometry))
    counter = counters.for_camera(camera)
    counter.count(frames[0])

    c0 = time.process_time()
    n, seconds = bench_site.engine_only(counter, frames, args.seconds)
    engine_cpu = (time.process_time() - c0) / n

    clocks = ThreadClocks()
    clocks.read()
    before = dict(clocks.cpu)
    clocks.start()
    c0 = time.process_time()
    outputs, pipeline_s, _dropped = bench_site._pipeline(bench_site.engine_fed(base), counters, args.seconds)
    pipeline_cpu = (time.process_time() - c0) / max(len(outputs), 1)
    clocks.stop()
    spent = clocks.by_name(before)
    frames_n = max(len(outputs), 1)

    result = {
        "site": str(args.site), "camera": camera, "precision": precision,
        "engine_only": {"fps": n / seconds, "cpu_ms_per_frame": 1e3 * engine_cpu},
        "pipeline": {"fps": len(outputs) / pipeline_s, "cpu_ms_per_frame": 1e3 * pipeline_cpu,
                     "frames": len(outputs)},
        "threads_cpu_ms_per_frame": {name: round(1e3 * s / frames_n, 2) for name, s in spent.most_common()
                                     if s > 0 and name != "thread-clock"},
        "machine": machine_info(),
    }
    print(f"engine only: {result['engine_only']['fps']:.2f} frames/s, {1e3 * engine_cpu:.1f} CPU ms a frame")
    print(f"pipeline:    {result['pipeline']['fps']:.2f} frames/s, {1e3 * pipeline_cpu:.1f} CPU ms a frame "
          f"({len(outputs)} frames)")
    for name, ms in result["threads_cpu_ms_per_frame"].items():
        print(f"  {name:24s} {ms:7.1f} CPU ms a frame")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
