"""Diagnosis only: the demo's gate readings one by one, quiet or beside artificial CPU load (issue 25).

Runs the demo site as ``crowdsafe demo`` does (the sample video looped as a live camera, the
shipped tuning, the default engine and precision unless ``--precision`` says otherwise), without
the API, for ``--duration`` seconds, and writes every reading with what the runtime knew when it
made it: the sample's frame index, timestamp, flow pair interval and period, the measured in/out
and the annotated crossings of the frames the reading covers (``cli.demo.GateTally``'s rule).
``--load N`` runs N busy-loop processes beside it for the whole run (what a shared machine does).

    python tools/demo_gate_readings.py --duration 180 --json /tmp/quiet.json
    python tools/demo_gate_readings.py --duration 180 --load 2 --json /tmp/load.json

The annotated crossings are ground truth for diagnosis; nothing is fitted to them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from crowdsafe.cli.demo import DEMO_FPS, DEMO_FRAMES, GateTally, annotated_crossings, demo_site_file
from crowdsafe.cli.options import EngineChoice, PrecisionChoice, engine_spec
from crowdsafe.config.site import load_site
from crowdsafe.counting import batch
from crowdsafe.runtime.core import RunnerConfig, prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.pipeline import CountedFrame, FrameOutput
from crowdsafe.store.store import open_store


def busy(stop_at: float) -> None:
    """One core's worth of pure-Python load until ``stop_at``."""
    x = 0
    while time.time() < stop_at:
        for i in range(100_000):
            x += i * i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes beside the run")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--precision", default="auto", choices=[c.value for c in PrecisionChoice],
                        help="auto: the demo's (int8 where validated); the first runs of this tool used fp32")
    args = parser.parse_args()
    prepared = prepare_site(load_site(demo_site_file()), loop=True)
    precision = PrecisionChoice.auto if args.precision == "auto" else PrecisionChoice(args.precision)
    counter = CameraCounters(prepared.plan, engine_spec(EngineChoice.auto, precision, None, announce=False),
                             batch.make_counter)
    crossings = annotated_crossings()
    tally = GateTally(crossings, fps=DEMO_FPS, frame_count=DEMO_FRAMES)
    samples: dict[float, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def on_frame(output: FrameOutput) -> None:
        before = {k: list(v) for k, v in tally.truth.items()}
        tally.add(output)
        for row in output.line_rows:
            lid = str(row["line_id"])
            t_before = before.get(lid, [0, 0])
            truth = tally.truth[lid]
            rows.append(samples.get(output.ts, {}) | {
                "line_id": lid, "frame_index": output.frame_index, "ts": round(output.ts, 3),
                "period_s": round(float(row["period_s"]), 3),  # type: ignore[arg-type]
                "in": round(float(row["in_count"]), 3), "out": round(float(row["out_count"]), 3),  # type: ignore[arg-type]
                "truth_in": truth[0] - t_before[0], "truth_out": truth[1] - t_before[1]})

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "crowdsafe.sqlite")
        config = RunnerConfig(state_dir=Path(tmp), duration_s=args.duration, health_every_s=5.0)
        runner = local_runner(prepared, store, counter, config, on_frame=on_frame)
        measure = runner.pipeline.measure

        def recorded(counted: CountedFrame) -> FrameOutput:
            s = counted.sample
            samples[s.ts] = {"pair_dt": None if s.pair_dt is None else round(s.pair_dt, 4),
                             "measured_at_lag_s": round(time.time() - s.ts, 3)}
            return measure(counted)

        runner.pipeline.measure = recorded  # type: ignore[method-assign]
        stop_at = time.time() + args.duration + 30
        loaders = [multiprocessing.Process(target=busy, args=(stop_at,), daemon=True)
                   for _ in range(args.load)]
        for p in loaders:
            p.start()
        started = time.time()
        summary = runner.run()
        for p in loaders:
            p.terminate()
            p.join()
        store.close()
    result = {"duration_s": args.duration, "load_processes": args.load, "precision": args.precision,
              "wall_s": round(time.time() - started, 1),
              "load_average_end": os.getloadavg(), "summary": tally.summary(),
              "frames_counted": summary.frames, "readings": rows}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for line in tally.summary():
        print(line)


if __name__ == "__main__":
    main()
