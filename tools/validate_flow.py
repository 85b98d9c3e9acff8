"""Validate line flow on the sample video against crossings derived from annotated foot points.

Ground truth: the PETS09-S2L1 foot points per frame (../shared/data/video/vtest_points.json,
annotations only, no video analysis); consecutive frames' points are paired by nearest
neighbour (10 fps, people move < 10 px per frame) and a crossing is a pair whose segment
crosses the line. Estimate: crowdsafe's flux (density x DIS optical flow) on one frame pair
(k, k+gap) every ``--every`` seconds, times the interval. Prints per-window and total counts
for the first gap, and the totals for every gap in ``--gaps`` (the runtime uses gap 1: the
frame right after the sampled one).

    python tools/validate_flow.py --every 1 --line 400,150,400,575 [--precision int8] [--gaps 1,2,3]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec, create_engine
from crowdsafe.measure.flow import line_flux, optical_flow

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"


def side(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    return np.sign(d[0] * (p[..., 1] - a[1]) - d[1] * (p[..., 0] - a[0]))


def gt_crossings(points: dict, a: np.ndarray, b: np.ndarray, max_step: float = 25.0) -> np.ndarray:
    """(frames, 2): crossings towards the positive / negative side between frame k and k+1."""
    n = len(points)
    out = np.zeros((n, 2))
    for k in range(n - 1):
        p = np.array(points[str(k)]["points"]).reshape(-1, 2)
        q = np.array(points[str(k + 1)]["points"]).reshape(-1, 2)
        if not len(p) or not len(q):
            continue
        dist = np.linalg.norm(p[:, None] - q[None], axis=2)
        used: set[int] = set()
        for i in np.argsort(dist.min(axis=1)):
            j = int(np.argmin(np.where(np.isin(np.arange(len(q)), list(used)), np.inf, dist[i])))
            if dist[i, j] > max_step or j in used:
                continue
            used.add(j)
            s0, s1 = side(p[i], a, b), side(q[j], a, b)
            t = np.clip(np.dot(q[j] - a, b - a) / np.dot(b - a, b - a), 0, 1)
            if s0 != s1 and s0 != 0 and 0 < t < 1:
                # image y is down: "left of a->b" is where side() is negative
                out[k, 0 if s1 < 0 else 1] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--line", default="400,150,400,575")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    ap.add_argument("--gaps", default="1", help="frame gaps of the flow pair to compare, e.g. 1,2,3")
    args = ap.parse_args()
    gaps = [int(g) for g in args.gaps.split(",")]
    ax, ay, bx, by = (float(v) for v in args.line.split(","))
    a, b = np.array([ax, ay]), np.array([bx, by])
    points = json.loads((SHARED / "vtest_points.json").read_text())
    truth = gt_crossings(points, a, b)
    cap = cv2.VideoCapture(str(resources.files("crowdsafe") / "data" / "vtest.avi"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    counter = DensityCounter(create_engine(EngineSpec(precision=args.precision)))
    estimates = {g: np.zeros((len(points), 2)) for g in gaps}
    step = round(args.every * fps)
    for k in range(0, len(points) - max(gaps), step):
        cap.set(cv2.CAP_PROP_POS_FRAMES, k)
        frames = [cap.read() for _ in range(max(gaps) + 1)]
        if not all(ok for ok, _ in frames):
            break
        f1 = frames[0][1]
        density = counter.count(f1).density
        for g in gaps:
            flux = line_flux(density, 8, optical_flow(f1, frames[g][1], g / fps), (ax, ay), (bx, by))
            estimates[g][k] = (flux.positive_per_s * args.every, flux.negative_per_s * args.every)
    est = estimates[gaps[0]]
    win = round(args.window * fps)
    print(f"{'window':>10} {'true +':>7} {'est +':>7} {'true -':>7} {'est -':>7}")
    rows = []
    for s in range(0, len(points), win):
        t, e = truth[s:s + win].sum(0), est[s:s + win].sum(0)
        rows.append((t, e))
        print(f"{s / fps:5.0f}-{(s + win) / fps:<4.0f} {t[0]:7.0f} {e[0]:7.2f} {t[1]:7.0f} {e[1]:7.2f}")
    tt, ee = truth.sum(0), est.sum(0)
    mae = np.mean([np.abs(t - e).sum() for t, e in rows])
    print(f"total: true +{tt[0]:.0f} / -{tt[1]:.0f}; estimated +{ee[0]:.1f} / -{ee[1]:.1f}; "
          f"MAE per {args.window:.0f}-s window (both directions) {mae:.2f}")
    for g in gaps:
        e = estimates[g].sum(0)
        print(f"gap {g} frame(s): estimated {e.sum():.1f} crossings (+{e[0]:.1f} / -{e[1]:.1f}) "
              f"vs {tt.sum():.0f} annotated ({args.precision})")


if __name__ == "__main__":
    main()
