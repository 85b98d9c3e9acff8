"""Choose a model's int8 calibration method on TRAIN images only.

Histograms are collected once on ``--images`` train images (the same selection
``crowdsafe models calibrate`` uses); each method's plan is then built and run in OpenVINO int8
on a disjoint, equally spread set of held-out train images and its count drift against fp32
(ONNX Runtime) is printed. The dev sets are never read here: they stay for the drift that
``crowdsafe bench`` reports, so that figure is not tuned on the images it is measured on.

    python benchmarks/int8_method_sweep.py --model sparse \
        ../shared/data/crowd-train/shanghaitech_b_train
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from crowdsafe.bench.drift import drift
from crowdsafe.counting import calibrate as cal
from crowdsafe.counting.graph import Int8Plan, build_model
from crowdsafe.counting.variants import model_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--model", default="sparse", choices=("dense", "sparse"))
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--validate", type=int, default=16)
    parser.add_argument("--max-side", type=int, default=768)
    parser.add_argument("--methods", default=",".join(cal.METHODS))
    parser.add_argument("--keep-float", default=",".join(cal.DEFAULT_KEEP_FLOAT))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if any(d.resolve().parent.name == "crowd" for d in args.dirs):
        raise SystemExit("evaluation data (shared/data/crowd) must not be used to choose a method")

    import onnxruntime as ort
    import openvino as ov

    start = time.perf_counter()
    collector = cal.StatisticsCollector(model_name=args.model)
    for p in cal.select_images(args.dirs, args.images):
        collector.add(cal.load_batch(p, args.max_side))
    print(f"statistics on {collector.images} images: {time.perf_counter() - start:.0f} s", flush=True)

    held_out = cal.select_images(args.dirs, args.validate, offset=0.5)
    batches = [cal.load_batch(p, args.max_side) for p in held_out]
    weights = model_weights(args.model)
    fp32 = ort.InferenceSession(build_model(weights).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    reference = [float(fp32.run(None, {"image": b})[0].sum(dtype=np.float64)) for b in batches]
    core = ov.Core()
    keep = frozenset(k for k in args.keep_float.split(",") if k)
    results: dict[str, object] = {
        "model": args.model, "keep_float": sorted(keep), "calibration_images": collector.images,
        "sources": sorted({d.name for d in args.dirs}), "max_side": args.max_side,
        "engines": {"reference": "onnxruntime fp32", "candidate": "openvino int8"},
        "validate": [f"{p.parent.name}/{p.name}" for p in held_out], "methods": {}}
    for method in args.methods.split(","):
        plan = Int8Plan(activation_scales=collector.scales(method), keep_float=keep)
        onnx_file = Path(tempfile.mkdtemp()) / f"{args.model}-{method}.onnx"
        onnx_file.write_bytes(build_model(weights, int8=plan).SerializeToString())
        model = core.read_model(str(onnx_file))
        compiled = {}
        got = []
        for b in batches:
            if b.shape not in compiled:
                m = model.clone()
                m.reshape({"image": list(b.shape)})
                compiled[b.shape] = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            got.append(float(np.asarray(compiled[b.shape]({"image": b})[0]).sum(dtype=np.float64)))
        d = drift(reference, got)
        bias = (sum(got) - sum(reference)) / sum(reference) * 100
        results["methods"][method] = {**d.as_dict(), "signed_aggregate_pct": bias}  # type: ignore[index]
        print(f"{method:>8}: aggregate {d.aggregate_pct:.2f} % (signed {bias:+.2f} %), "
              f"mean |per image| {d.mean_abs_pct:.2f} %, max {d.max_abs_pct:.2f} %", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
