"""How long commissioning a camera takes on this machine: `crowdsafe tune --finetune` on the Mall
camera's training frames (the first N of 1-800), timed end to end, with the machine's load.

    PYTHONPATH=src python benchmarks/commission_mall.py --frames 100 800 \
        --out benchmarks/results/commission-mall-one-pass-2026-12-07.json

Goals (issue "A second real camera"): 800 frames in at most 20 minutes, 100 in at most 5, on the
two-core machine. The command is the one the acceptance runs (``--frames 0:N``); the tuning it
writes goes to a temporary folder. Nothing here looks at frames 801-900.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROWDSAFE_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRAIN = SHARED / "crowd-train" / "mall_train"
SITE = ROOT / "benchmarks" / "sites" / "mall.yaml"


def commission(frames: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        cmd = [sys.executable, "-m", "crowdsafe.cli.main", "tune", str(SITE), "--camera", "mall",
               "--source", str(TRAIN), "--labels", str(TRAIN / "labels.json"), "--frames", f"0:{frames}",
               "--finetune", "--out", str(out)]
        load_before = os.getloadavg()
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"tune failed:\n{proc.stdout}\n{proc.stderr}")
        tuning = json.loads(out.read_text())
    return {"frames": frames, "seconds": round(seconds, 1), "minutes": round(seconds / 60, 2),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "chosen": {"model": tuning["model"], "finetuned": tuning.get("weights") is not None,
                       "background": tuning["background"], "gain": tuning["gain"],
                       "cv_mae": tuning["expected"]["cv_mae"],
                       "cv_coverage": tuning["expected"]["cv_coverage"],
                       "finetune": (tuning.get("weights") or {}).get("finetune")},
            "command": " ".join(cmd[2:]), "printed": proc.stdout.strip().splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[800, 100])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs: list[dict[str, object]] = []
    for n in args.frames:  # written after each run: a long one stopped keeps the others
        runs.append(commission(n))
        result = {"benchmark": "commission-mall", "cpu_count": os.cpu_count(),
                  "machine": platform.processor() or platform.machine(),
                  "note": "the two cores are shared with other engineers' jobs; the load averages "
                          "say how busy they were (minutes are upper bounds for a quiet machine)",
                  "runs": runs}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        run = runs[-1]
        print(f"{run['frames']} frames: {run['minutes']} min (load {run['load_average_before'][0]})")


if __name__ == "__main__":
    main()
