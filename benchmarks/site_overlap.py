"""Does measuring on its own thread (``RunnerConfig.overlap_measure``) help on this machine?

    python benchmarks/site_overlap.py [--site SITE.yaml] [--rounds 2] [--duration 40] [--json OUT]

Runs ``crowdsafe bench --site`` (``bench.site.site_bench``) with the measuring step overlapped with
the next frame's counting and without, alternating ``--rounds`` times so that a shared machine's
changing load falls on both alike. Each run measures its own engine-only frames/s, so the ratio
delivered / engine is comparable across runs even when the absolute rates are not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from importlib import resources
from pathlib import Path

from crowdsafe.bench.machine import machine_info
from crowdsafe.bench.site import site_bench
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.counting.precision import default_precision

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=DEMO)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    precision, why = default_precision()
    spec = EngineSpec(precision=precision)
    runs = []
    for round_ in range(args.rounds):
        for overlap in (True, False):
            load = os.getloadavg()[0]
            result = site_bench(args.site, spec, args.duration, overlap=overlap)
            for cam in result.cameras:
                runs.append({"round": round_, "overlap": overlap, "camera": cam.camera,
                             "load_1m_at_start": load, "delivered_fps": cam.delivered_fps,
                             "engine_fps": cam.engine_fps, "ratio": cam.ratio, "stages": cam.stages})
                print(f"round {round_} overlap {overlap!s:5}: delivered {cam.delivered_fps:.2f} engine "
                      f"{cam.engine_fps:.2f} frames/s = {cam.ratio:.0%} (load {load:.1f})", flush=True)
    summary = {str(o): statistics.median(r["ratio"] for r in runs if r["overlap"] is o)
               for o in (True, False)}
    print(f"median delivered / engine: overlapped {summary['True']:.0%}, serial {summary['False']:.0%}")
    if args.json is not None:
        given = sys.argv[1:] if argv is None else argv
        args.json.write_text(json.dumps({
            "command": "python benchmarks/site_overlap.py " + " ".join(given),
            "machine": machine_info(), "precision": precision, "precision_reason": why,
            "median_ratio": summary, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
