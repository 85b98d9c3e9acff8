"""Diagnosis only: how fast the pipeline's image velocity says annotated heads move, against their
annotated displacement (issue 25, east_gate under-reads on the sample video).

    python tools/flow_vs_heads.py ../shared/data/video/vtest.avi ../shared/data/video/vtest_heads.json

For every 10th frame k, heads are matched to frame k + 5 (nearest, each used once, at most 80 px
apart) and their annotated velocity is the 5-frame displacement / 5, which averages out the
annotation's jitter. Printed: the slope sum(e . t) / sum(|t|^2) of each velocity reading e on the
annotated t (1.0 = unbiased) and the median per head, for the pipeline's ``optical_flow`` read at
the head and averaged from the head down over the torso, for pyramidal Lucas-Kanade on the upper
torso, and for
template matching of the head-and-torso patch over the same 5 frames (checks the annotation
against the pixels). The annotations are ground truth for diagnosis; nothing is fitted to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.evaluation.flow_speed import SPAN, moving_heads, read_velocity
from crowdsafe.evaluation.site import load_frame_points
from crowdsafe.measure.flow import _bilinear, optical_flow


def main(video: Path, heads_path: Path) -> None:
    heads = load_frame_points(heads_path)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    ratios: dict[str, list[float]] = {}
    sums = {name: [0.0, 0.0] for name in ("optical_flow at head", "optical_flow head..torso",
                                          "Lucas-Kanade 15x15 upper torso", "template match 5 frames")}
    for k in range(0, len(frames) - SPAN, 10):
        p, t = moving_heads(heads, k)  # t: px per frame
        if len(p) == 0:
            continue
        flow = optical_flow(frames[k], frames[k + 1], 1.0)
        readings = {"optical_flow at head": _bilinear(flow, p[:, 0], p[:, 1]),
                    "optical_flow head..torso": read_velocity(flow, p)}
        g0, g1 = (cv2.cvtColor(frames[n], cv2.COLOR_BGR2GRAY) for n in (k, k + 1))
        torso = (p + np.array([0.0, 12.0])).astype(np.float32).reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(g0, g1, torso, None, winSize=(15, 15), maxLevel=2)
        lk = np.where(status.reshape(-1, 1) > 0, moved.reshape(-1, 2) - torso.reshape(-1, 2), np.nan)
        readings["Lucas-Kanade 15x15 upper torso"] = lk
        g5 = cv2.cvtColor(frames[k + SPAN], cv2.COLOR_BGR2GRAY)
        tm = np.full_like(t, np.nan)
        for n, (x, y) in enumerate(p):
            x0, y0, r = int(x) - 8, int(y) - 6, 35
            if x0 < r or y0 < r or x0 + 16 + r > g0.shape[1] or y0 + 30 + r > g0.shape[0]:
                continue
            score = cv2.matchTemplate(g5[y0 - r:y0 + 30 + r, x0 - r:x0 + 16 + r], g0[y0:y0 + 30, x0:x0 + 16],
                                      cv2.TM_CCOEFF_NORMED)
            _, best, _, loc = cv2.minMaxLoc(score)
            if best >= 0.8:
                tm[n] = (np.array(loc, float) - r) / SPAN
        readings["template match 5 frames"] = tm
        for name, e in readings.items():
            ok = np.all(np.isfinite(e), axis=1)
            sums[name][0] += float((e[ok] * t[ok]).sum())
            sums[name][1] += float((t[ok] ** 2).sum())
            ratios.setdefault(name, []).extend(((e[ok] * t[ok]).sum(1) / (t[ok] ** 2).sum(1)).tolist())
    for name, (num, den) in sums.items():
        print(f"{name:32s} reads {num / den:.3f} of the annotated head speed (slope; median per head "
              f"{np.median(ratios[name]):.3f}, n {len(ratios[name])})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
