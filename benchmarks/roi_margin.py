"""How much context a region crop needs: region counts vs full-frame counts inside the region.

    PYTHONPATH=src python benchmarks/roi_margin.py --out benchmarks/results/roi-margin-2026-12-06.json

Why: ``counting.region`` infers a crop of the needed cells plus a margin and keeps only the
cells of the core; a cell near the core's edge sees less context than in the full frame. This
measures, per margin, |region count - full-frame count| / full-frame count inside the core, on
real frames: the demo video (the demo camera's source) and ShanghaiTech TRAIN images (never the
dev/test images of shared/data/crowd). Two cores per image: its centre (a quarter of the frame,
context lost on all four sides) and a lower-right box (two sides on the frame's edge).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec, create_engine
from crowdsafe.counting.graph import STRIDE
from crowdsafe.counting.region import Box, RegionCounter, with_margin

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "crowd-train"
MARGINS = (32, 64, 96, 112, 128)
DEMO_FRAMES = (0, 200, 400, 600)
TRAIN_IMAGES = ("shanghaitech_b_train/IMG_1.jpg", "shanghaitech_b_train/IMG_50.jpg",
                "shanghaitech_a_train/IMG_1.jpg", "shanghaitech_a_train/IMG_50.jpg")
MAX_SIDE = 1024


def demo_frames() -> list[tuple[str, np.ndarray]]:
    site = load_site(Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml")))
    cap = cv2.VideoCapture(str(site.resolve_source(site.cameras[0])))
    frames = []
    for index in DEMO_FRAMES:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if ok:
            frames.append((f"vtest.avi#{index}", frame))
    cap.release()
    return frames


def train_images() -> list[tuple[str, np.ndarray]]:
    images = []
    for name in TRAIN_IMAGES:
        image = cv2.imread(str(TRAIN / name))
        if image is None:
            continue
        scale = MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append((name, image))
    return images


def cores(width: int, height: int) -> dict[str, Box]:
    """The two test cores of an image, on the density grid."""
    def grid(v: float) -> int:
        return int(v) // STRIDE * STRIDE
    return {"centre": Box(grid(width / 4), grid(height / 4), grid(3 * width / 4), grid(3 * height / 4)),
            "lower-right": Box(grid(width / 2), grid(0.4 * height), grid(width), grid(height))}


def measure(counter: DensityCounter, name: str, image: np.ndarray) -> list[dict[str, object]]:
    h, w = image.shape[:2]
    full = counter.count(image).density
    rows = []
    for label, core in cores(w, h).items():
        cells = core.cells()
        reference = float(full[cells].sum(dtype=np.float64))
        for margin in MARGINS:
            crop = with_margin(core, margin, w, h)
            region = RegionCounter(counter, core, crop).count(image).count
            diff = 100 * abs(region - reference) / reference if reference > 0 else None
            rows.append({"image": name, "core": label, "margin": margin,
                         "core_share": core.pixels / (w * h), "crop_share": crop.pixels / (w * h),
                         "full_count": reference, "region_count": region, "rel_diff_pct": diff})
    return rows


def summary(rows: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    out = {}
    for margin in MARGINS:
        sel = [r for r in rows if r["margin"] == margin]
        full = np.array([r["full_count"] for r in sel], float)
        region = np.array([r["region_count"] for r in sel], float)
        rel = [r["rel_diff_pct"] for r in sel if r["rel_diff_pct"] is not None]
        out[str(margin)] = {"max_rel_diff_pct": float(max(rel)), "mean_rel_diff_pct": float(np.mean(rel)),
                            "aggregate_rel_diff_pct": float(100 * np.abs(region - full).sum() / full.sum()),
                            "cores": len(sel)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="sparse,dense")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    images = demo_frames() + train_images()
    result: dict[str, object] = {
        "command": "PYTHONPATH=src python benchmarks/roi_margin.py " + " ".join(sys.argv[1:]),
        "precision": args.precision, "margins_px": list(MARGINS), "images": [n for n, _ in images],
        "metric": "|region - full| / full, density summed over the core cells", "models": {}}
    started = time.perf_counter()
    for model in args.models.split(","):
        counter = DensityCounter(create_engine(EngineSpec(model=model, precision=args.precision)))
        rows = [row for name, image in images for row in measure(counter, name, image)]
        result["models"][model] = {"summary": summary(rows), "rows": rows}  # type: ignore[index]
        print(model, json.dumps(summary(rows), indent=1), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
