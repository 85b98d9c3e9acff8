"""What the commissioning refit alone does on Mall: the output layer refitted on frames 1-800, the
ridge chosen by cross-validated MAE on those frames, then frames 801-900 counted with it.

    PYTHONPATH=src python benchmarks/mall_refit.py --out benchmarks/results/mall-refit-DATE.json

Unlike `crowdsafe tune --finetune` this skips the comparison with the shipped settings
and the interval, to show what the fine-tuned layer itself counts. Frames 801-900
are only counted, never fitted on. Features at the precision `tune` reads them (int8 under OpenVINO).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.training.camera import RIDGES, CommissionPass, FrameSums, fit_candidates, frame_target

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CROWDSAFE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    train, dev = SHARED / "crowd-train" / "mall_train", SHARED / "crowd" / "mall"
    extractor = CommissionPass(args.threads)
    sums, started = FrameSums(), time.perf_counter()
    labels = json.loads((train / "labels.json").read_text())
    for k in range(1, 801):
        name = f"seq_{k:06d}.jpg"
        image = cv2.imread(str(train / name))
        points = np.asarray(labels[name]["points"], np.float64).reshape(-1, 2)
        sums.add(extractor(image).features, frame_target(points, *image.shape[:2]), len(points))
    feature_s = time.perf_counter() - started
    candidates = fit_candidates(sums, folds=5)
    truth = np.asarray(sums.people)
    cv = [float(np.abs(c.predicted - truth).mean()) for c in candidates]
    best = candidates[int(np.argmin(cv))].layer
    dev_labels = json.loads((dev / "labels.json").read_text())
    pairs = []
    for name in sorted(dev_labels):
        features = extractor(cv2.imread(str(dev / name))).features.astype(np.float64)
        x = features.reshape(features.shape[0], -1)
        pairs.append((float(best.count(np.concatenate([x.sum(axis=1), [x.shape[1]]]))),
                      float(dev_labels[name]["count"])))
    pred, people = np.array(pairs).T
    result = {"benchmark": "mall-refit", "feature_precision": extractor.precision,
              "ridges": list(RIDGES), "cv_mae_frames_1_800": cv, "chosen_ridge": best.ridge,
              "dev_frames": len(pairs), "dev_mae": float(np.abs(pred - people).mean()),
              "dev_bias": float((pred - people).mean()), "feature_seconds_800": round(feature_s, 1),
              "load_average": list(os.getloadavg())}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"frames 801-900: MAE {result['dev_mae']:.2f}, bias {result['dev_bias']:+.2f} "
          f"(ridge {best.ridge:g}, features {extractor.precision})")


if __name__ == "__main__":
    main()
