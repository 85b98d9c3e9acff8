"""CPU per frame of the live pipeline's measuring step (zones, the gate's optical flow and band) on the
demo site, and of OpenCV's DIS flow alone in the gate's box, per DIS setting.

    python benchmarks/measure_cost.py [--every 10] [--json OUT]

The demo video's frames every ``--every`` frames (one sample a second at its 10 frames/s) are
counted once by the site's own counter (``--precision``, int8 by default as ``run`` and ``demo``)
with the next frame as the flow pair, as the live reader gives it; then the measuring step
(``FramePipeline.measure``, as the runner's measuring thread runs it, background check apart)
is timed over them with this process's CPU clock (``time.process_time``: all threads), once per
DIS setting, in turn, twice. The CPU clock, not the wall clock: on a machine shared with other
jobs, it is what a stage costs the engine beside it. The gate's in/out totals over the frames are
printed too: a change to the flow that moves them moves the gate's readings (``gates.sh`` is the
check on them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import cv2

import crowdsafe.measure.flow as flow
from crowdsafe.config.site import load_site
from crowdsafe.counting import batch
from crowdsafe.counting.engines import EngineSpec
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.core import prepare_site
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.pipeline import CountedFrame, FrameFit, FramePipeline, count_frame

SITE = Path(__file__).resolve().parents[1] / "src" / "crowdsafe" / "data" / "demo_site.yaml"
#: (name, preset, finest pyramid level): the shipped setting first, then the medium preset it replaced.
SETTINGS = [("ultrafast search, level 1 (shipped)", cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, 1),
            ("medium (before)", cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 1),
            ("fast", cv2.DISOPTICAL_FLOW_PRESET_FAST, 2),
            ("ultrafast, level 2", cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, 2)]


def counted_frames(every: int, precision: str) -> tuple[FramePipeline, list[CountedFrame], tuple[int, ...]]:
    prepared = prepare_site(load_site(SITE), loop=False)
    spec = EngineSpec(precision=precision)  # type: ignore[arg-type]
    counters = CameraCounters(prepared.plan, spec, batch.make_counter)
    cam = prepared.site.cameras[0]
    cap = cv2.VideoCapture(prepared.site.resolve_source(cam))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    fit = FrameFit(prepared.geometry)
    out: list[CountedFrame] = []
    k, previous = 0, None
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if previous is not None and (k - 1) % every == 0:
            sample = Sample(cam.id, 1_000_000.0 + (k - 1) / fps, previous, image, 1.0 / fps, k - 1)
            out.append(count_frame(counters, fit, sample))
        previous = image if k % every == 0 else None
        k += 1
    cap.release()
    pipe = FramePipeline(prepared.plan, counters)
    body = pipe._body(cam.id)
    box = pipe._flow_box(cam.id, list(prepared.plan.lines.values()), every / fps, body)
    return pipe, out, box


def measure_cpu(pipe: FramePipeline, frames: list[CountedFrame]) -> tuple[float, float, float]:
    """(CPU ms per frame, gate in, gate out) of measuring ``frames`` in order, on a fresh pipeline."""
    fresh = FramePipeline(pipe.plan, pipe.counting)
    fresh.offer_background = lambda *a, **k: None  # type: ignore[method-assign]  # its own, rare, inference
    c0 = time.process_time()
    outs = [fresh.measure(c) for c in frames]
    cpu = time.process_time() - c0
    rows = [r for o in outs for r in o.line_rows]
    gate_in = sum(float(r["in_count"]) for r in rows)  # type: ignore[arg-type]
    gate_out = sum(float(r["out_count"]) for r in rows)  # type: ignore[arg-type]
    return 1000 * cpu / len(frames), gate_in, gate_out


def dis_cpu(frames: list[CountedFrame], box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    grey = [(cv2.cvtColor(c.sample.image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY),
             cv2.cvtColor(c.sample.pair[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY))  # type: ignore[index]
            for c in frames]
    c0 = time.process_time()
    for a, b in grey:
        flow._dis().calc(a, b, None)
    return 1000 * (time.process_time() - c0) / len(grey)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=10, help="sample every N frames of the demo video")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    load_before = [round(v, 2) for v in os.getloadavg()]
    pipe, frames, box = counted_frames(args.every, args.precision)
    results: dict[str, dict[str, Any]] = {}
    for _round in range(2):
        for name, preset, level in SETTINGS:
            flow.FLOW_PRESET, flow.FLOW_FINEST_SCALE = preset, level
            ms, gate_in, gate_out = measure_cpu(pipe, frames)
            entry = results.setdefault(name, {"preset": preset, "finest_scale": level, "measure_cpu_ms": [],
                                              "dis_cpu_ms_in_box": []})
            entry["measure_cpu_ms"].append(round(ms, 2))
            entry["dis_cpu_ms_in_box"].append(round(dis_cpu(frames, box), 2))
            entry["gate_in"], entry["gate_out"] = round(gate_in, 2), round(gate_out, 2)
    for name, entry in results.items():
        entry["measure_cpu_ms_median"] = statistics.median(entry["measure_cpu_ms"])
        entry["dis_cpu_ms_in_box_median"] = statistics.median(entry["dis_cpu_ms_in_box"])
        print(f"{name}: measuring {entry['measure_cpu_ms_median']} ms CPU/frame "
              f"(rounds {entry['measure_cpu_ms']}), DIS in the box {entry['dis_cpu_ms_in_box_median']} ms; "
              f"gate in {entry['gate_in']} out {entry['gate_out']}")
    data = {"command": "python benchmarks/measure_cost.py " + " ".join(
                f"--{k} {v}" for k, v in (("every", args.every), ("precision", args.precision))),
            "frames": len(frames), "gate_box": box, "cv2": cv2.__version__,
            "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
            "settings": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
