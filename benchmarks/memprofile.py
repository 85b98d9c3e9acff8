"""Python-level memory of the local runner on the demo site: tracemalloc snapshot diffs plus RSS over time.

    python benchmarks/memprofile.py --duration 240 [--every 1s] [--snapshot-every 30] [--trim]

Drives the runner in-process with the small counter (int8 when shipped, else fp32), a forecast
step on a quick profile fit (every 5 s, so minutes show what hours of 60 s steps would), and
prints the top allocation growth between the first snapshot after warm-up and each later one,
and RSS. ``--trim`` calls glibc ``malloc_trim(0)`` before each RSS sample (allocator hypothesis).
Not part of CI.
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from crowdsafe.bench.machine import rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=240)
    parser.add_argument("--every", default="1s")
    parser.add_argument("--snapshot-every", type=float, default=30)
    parser.add_argument("--trim", action="store_true")
    args = parser.parse_args()

    from crowdsafe.bench.demo_store import demo_site_file
    from crowdsafe.config.site import load_site
    from crowdsafe.counting.counter import DensityCounter, EveryCamera
    from crowdsafe.counting.engines import EngineSpec, EngineUnavailable, create_engine
    from crowdsafe.forecast import fit_site_model
    from crowdsafe.forecast.live import ForecastStep, LiveForecasts
    from crowdsafe.runtime.background import BackgroundPolicy
    from crowdsafe.runtime.core import RunnerConfig, prepare_site
    from crowdsafe.runtime.local import local_runner
    from crowdsafe.store.store import open_store

    counter = None
    for precision in ("int8", "fp32"):
        try:
            counter = DensityCounter(create_engine(EngineSpec(precision=precision)))
            break
        except EngineUnavailable:
            continue
    assert counter is not None
    tmp = Path(tempfile.mkdtemp(prefix="memprof-"))
    prepared = prepare_site(load_site(demo_site_file(tmp, every=args.every)))
    store = open_store(tmp / "s.sqlite")
    runner = local_runner(prepared, store, EveryCamera(counter), RunnerConfig(
        state_dir=tmp / "state", duration_s=args.duration, health_every_s=1,
        background=BackgroundPolicy(min_frames=3)))
    model = fit_site_model(prepared.site, "profile", train_days=1, calib_days=3, seed=77)  # a small real fit
    live = LiveForecasts(prepared.site, "profile", fit=lambda *_: model)
    live.wait(60)
    runner.forecast = ForecastStep(store, prepared.site, every_s=5, alert=runner.alerts.update, live=live)
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.trim else None

    tracemalloc.start(12)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    base = None
    while thread.is_alive():
        thread.join(args.snapshot_every)
        if trim is not None:
            trim(0)
        t = time.monotonic() - t0
        traced, _ = tracemalloc.get_traced_memory()
        frames = sum(runner.summary.frames.values())
        print(f"t={t:6.0f}s frames={frames:5d} rss={rss_mb():7.1f} MB traced={traced / 2**20:6.2f} MB",
              flush=True)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if base is None:
            base = snap
            continue
        for stat in snap.compare_to(base, "traceback")[:3]:
            if stat.size_diff > 20_000:
                print(f"   +{stat.size_diff / 1024:8.1f} KiB  +{stat.count_diff} blocks")
                for line in stat.traceback.format()[-8:]:
                    print("      " + line)


if __name__ == "__main__":
    main()
