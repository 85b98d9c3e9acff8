"""The loss curve as a PNG drawn with OpenCV (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from crowdsafe.training.loop import TrainLog

W, H, PAD = 900, 420, 60


def _smooth(values: list[float], window: int) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if len(v) < window or window < 2:
        return v
    kernel = np.ones(window) / window
    head = np.array([v[: i + 1].mean() for i in range(window - 1)])
    return np.concatenate([head, np.convolve(v, kernel, mode="valid")])


def write_curve(log: TrainLog, path: Path) -> None:
    """Training loss (moving average, log scale, blue) and validation MAE (orange, right axis)."""
    img = np.full((H, W, 3), 255, np.uint8)
    x0, x1, y0, y1 = PAD, W - PAD, PAD // 2, H - PAD
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    n = max(log.steps[-1] if log.steps else 1, 1)

    def px(step: float) -> int:
        return int(x0 + (x1 - x0) * step / n)

    if log.losses:
        loss = np.log10(np.maximum(_smooth(log.losses, 25), 1e-9))
        lo, hi = float(loss.min()), float(loss.max()) + 1e-9
        pts = np.array([[px(s), int(y1 - (y1 - y0) * (v - lo) / (hi - lo))]
                        for s, v in zip(log.steps, loss, strict=True)], np.int32)
        cv2.polylines(img, [pts], False, (200, 90, 30), 2, cv2.LINE_AA)
        cv2.putText(img, f"train loss (log10, {10**lo:.3g}..{10**hi:.3g})", (x0 + 5, y0 + 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 90, 30), 1, cv2.LINE_AA)
    if log.evals:
        maes = [m for _, m, _ in log.evals]
        lo, hi = min(maes), max(maes) + 1e-9
        pts = np.array([[px(s), int(y1 - (y1 - y0) * (m - lo) / (hi - lo))] for s, m, _ in log.evals],
                       np.int32)
        cv2.polylines(img, [pts], False, (30, 140, 255), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, (int(p[0]), int(p[1])), 4, (30, 140, 255), -1, cv2.LINE_AA)
        cv2.putText(img, f"validation MAE ({lo:.2f}..{hi:.2f}), best {log.best_mae:.2f} at step "
                         f"{log.best_step}", (x0 + 5, y0 + 38), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (30, 140, 255), 1, cv2.LINE_AA)
    cv2.putText(img, f"step (0..{n})", (W // 2 - 40, H - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
