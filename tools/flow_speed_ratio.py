"""Diagnosis: the image velocity's speed against annotated heads, and the sample video's frame timing
(issue 25: east_gate under-reads at live sampling).

    python tools/flow_speed_ratio.py ../shared/data/video/vtest.avi ../shared/data/video/vtest_heads.json
    python tools/flow_speed_ratio.py VIDEO HEADS --methods   # instead: other flows and readings

Prints (``crowdsafe.evaluation.flow_speed``): which frame pairs span a dropped frame; the speed
ratio of the pipeline's ``optical_flow`` over one pair at every 10th frame (what a one-a-second
live sample reads), at every frame, split into pairs that span a dropped frame and pairs that do
not; and the flow followed over 2, 3 and 5 frames. With ``--methods``: other dense flows (finer
DIS, Farneback) and readings (moving pixels only, the fastest tenth of the pixels). The
annotations are ground truth for diagnosis; nothing is fitted to them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.evaluation.flow_speed import (
    SPAN,
    dropped_frame_pairs,
    followed_flow,
    moving_heads,
    read_velocity,
    speed_ratio,
)
from crowdsafe.evaluation.site import load_frame_points
from crowdsafe.measure.flow import optical_flow

Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def dis(preset: int, finest: int, refine: int | None = None) -> Flow:
    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flow = cv2.DISOpticalFlow.create(preset)
        flow.setFinestScale(finest)
        if refine is not None:
            flow.setVariationalRefinementIterations(refine)
        return flow.calc(a, b, None)
    return run


def farneback(window: int) -> Flow:
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, window, 3, 5, 1.1, 0)


def box_reading(field: np.ndarray, p: np.ndarray, pick: str) -> np.ndarray:
    """Velocity of the head-and-torso box (17 x 39 px from 4 px above the head): the mean of its
    moving pixels (over 0.5 px/frame), or of its fastest tenth."""
    out = np.zeros((len(p), 2))
    mag = np.linalg.norm(field, axis=2)
    for n, (x, y) in enumerate(p):
        x0, x1 = int(max(x - 8, 0)), int(min(x + 9, field.shape[1]))
        y0, y1 = int(max(y - 4, 0)), int(min(y + 35, field.shape[0]))
        v, m = field[y0:y1, x0:x1].reshape(-1, 2), mag[y0:y1, x0:x1].ravel()
        if pick == "moving":
            out[n] = v[m > 0.5].mean(0) if (m > 0.5).any() else 0.0
        else:
            out[n] = v[np.argsort(m)[-max(len(m) // 10, 1):]].mean(0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("heads", type=Path)
    parser.add_argument("--methods", action="store_true", help="other flows and readings (every 10th frame)")
    args = parser.parse_args()
    frames = read_video(args.video)
    heads = load_frame_points(args.heads)
    drops = dropped_frame_pairs(frames)
    n = len(drops)
    print(f"frame pairs spanning a dropped frame: {drops.mean():.1%} of {n}; at every 10th frame "
          f"{drops[0::10].mean():.1%}, at every 20th {drops[0::20].mean():.1%}")

    def show(name: str, r: object) -> None:
        print(f"{name:52s} slope {r.slope:.3f}  median {r.median:.3f}  heads {r.heads}")  # type: ignore[attr-defined]

    def pair_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return optical_flow(a, b, 1.0)

    def pair(k: int) -> np.ndarray:
        return pair_flow(frames[k], frames[k + 1])

    if args.methods:
        compare_methods(frames, heads, n)
        return
    show("optical_flow, one pair, every 10th frame", speed_ratio(heads, range(0, n - SPAN, 10), pair))
    every = range(n - SPAN)
    show("  pairs with no dropped frame", speed_ratio(heads, [k for k in every if not drops[k]], pair))
    show("  pairs spanning a dropped frame", speed_ratio(heads, [k for k in every if drops[k]], pair))
    for span in (2, 3, SPAN):
        show(f"optical_flow followed over {span} frames, every 10th frame",
             speed_ratio(heads, range(0, n - span, 10),
                         lambda k, s=span: followed_flow(frames[k:k + s + 1], pair_flow)))


def compare_methods(frames: list[np.ndarray], heads: dict[int, np.ndarray], n: int) -> None:
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    methods: dict[str, Flow] = {
        "DIS ultrafast, half resolution (the pipeline's)": dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, 1),
        "DIS medium, half resolution (the pipeline's before)": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 1),
        "DIS medium at full resolution": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 0),
        "DIS medium at full resolution, no variational step": dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, 0, 0),
        "DIS fast at full resolution": dis(cv2.DISOPTICAL_FLOW_PRESET_FAST, 0),
        "Farneback, 9 px window": farneback(9),
        "Farneback, 15 px window": farneback(15),
    }
    starts = range(0, n - SPAN, 10)
    for name, flow in methods.items():
        sums = {"head and torso": [0.0, 0.0], "moving pixels": [0.0, 0.0], "fastest tenth": [0.0, 0.0]}
        for k in starts:
            p, t = moving_heads(heads, k)
            if len(p) == 0:
                continue
            field = flow(grey[k], grey[k + 1])
            for reading, e in (("head and torso", read_velocity(field, p)),
                               ("moving pixels", box_reading(field, p, "moving")),
                               ("fastest tenth", box_reading(field, p, "fastest"))):
                sums[reading][0] += float((e * t).sum())
                sums[reading][1] += float((t**2).sum())
        print(f"{name:52s} " + "; ".join(f"{r} {num / den:.3f}" for r, (num, den) in sums.items()))

if __name__ == "__main__":
    main()
