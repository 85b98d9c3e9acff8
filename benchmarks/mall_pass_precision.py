"""Why the commissioning pass runs int8: the dense model on 12 Mall training frames (640x480) in
OpenVINO at bf16, int8 (the shipped table) and fp32, seconds per frame and count drift from fp32.

    PYTHONPATH=src python benchmarks/mall_pass_precision.py

Training frames only (1-12); prints, writes nothing (the figures are quoted in
docs/results/accuracy.md with the load they were measured under).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.counter import to_batch
from crowdsafe.counting.engines import load_int8_plan
from crowdsafe.counting.graph import INPUT_NAME, build_model
from crowdsafe.counting.variants import model_weights

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROWDSAFE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    import openvino as ov

    weights = model_weights("dense")
    core = ov.Core()
    train = SHARED / "crowd-train" / "mall_train"
    frames = [to_batch(cv2.imread(str(train / f"seq_{k:06d}.jpg"))) for k in range(1, 13)]
    counts = {}
    for name, plan, hint in (("bf16", None, "bf16"), ("int8", load_int8_plan("dense"), "bf16"),
                             ("fp32", None, "f32")):
        model = core.read_model(build_model(weights, int8=plan).SerializeToString(), b"")
        model.reshape({INPUT_NAME: list(frames[0].shape)})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        compiled({INPUT_NAME: frames[0]})
        started = time.perf_counter()
        counts[name] = np.array([float(np.asarray(compiled({INPUT_NAME: x})[0]).sum()) for x in frames])
        print(f"{name}: {(time.perf_counter() - started) / len(frames):.2f} s/frame", flush=True)
    for name in ("bf16", "int8"):
        print(f"{name} drift from fp32: {np.abs(counts[name] - counts['fp32']).mean():.3f} people/frame "
              f"(mean {counts['fp32'].mean():.1f}); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
