"""Where a profiled run's time went, per thread and per pipeline stage, from py-spy's raw stacks.

    py-spy record --rate 50 --threads --format raw -o demo.raw -- \
        crowdsafe demo --duration 90 --quiet --port 0
    python benchmarks/profile_summary.py demo.raw --json OUT

py-spy samples every thread that is not idle; a stage's share is the share of all samples whose
stack passes through the function that runs it (inclusive), so the engine's share counts the
time its native code held the thread.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

#: Stage -> the function whose frames are that stage's (as py-spy names them).
STAGES = {
    "engine (count)": "OpenVinoEngine.infer",
    "engine (count, ONNX Runtime)": "OnnxRuntimeEngine.infer",
    "measure (whole step)": "FramePipeline.measure",
    "flow (optical flow)": "optical_flow",
    "flow (band crossings)": "band_crossings",
    "zones": "zone_readings",
    "background check": "FramePipeline.offer_background",
    "person evidence": "PersonEvidence.note",
    "reader (decode, pacing)": "CameraReader._run",
    "store writer": "StoreWriter._run",
    "API server": "serve_in_thread.<locals>.run",
}


def summarise(raw: Path) -> dict[str, object]:
    total = 0
    threads: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        head, _, rest = stack.partition(";")
        threads[head.split("): ", 1)[-1]] += n  # "thread (PID): NAME"
        frames = [f.split(" (")[0] for f in rest.split(";")]
        for stage, function in STAGES.items():
            if function in frames:
                stages[stage] += n
    return {"samples": total,
            "threads_pct": {k: round(100 * v / total, 1) for k, v in threads.most_common()},
            "stages_pct": {k: round(100 * stages[k] / total, 1) for k in STAGES if stages[k]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--command", default="", help="The command that was profiled, kept with the result.")
    args = parser.parse_args(argv)
    summary = summarise(args.raw)
    if args.command:
        summary = {"command": args.command, **summary}
    text = json.dumps(summary, indent=2) + "\n"
    print(text, end="")
    if args.json is not None:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
