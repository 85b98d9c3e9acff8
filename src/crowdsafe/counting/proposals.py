"""Head proposals from a density map, for a person to correct when labelling (``crowdsafe label``).

A density map says how many people there are (its sum) but not where each one is; its local
maxima are where the model puts most mass. Taking as many maxima as the map's rounded count,
strongest first and kept apart by about a head's width, gives a starting point that is right often
enough to save most clicks and never more points than the model believes are there. The points
are only ever shown to the person labelling; they are never stored as labels unless accepted.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Two maxima closer than this (in density cells) are one head: at 1/8 resolution the model spreads
#: a head over about 3x3 cells, so a second maximum inside that is the same person's shoulder.
MIN_SEPARATION_CELLS = 1.5


def head_proposals(density: np.ndarray, cell: int, count: float | None = None,
                   scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """``(n, 2)`` pixel points ``(x, y)`` at the strongest local maxima of ``density``.

    ``n`` is ``round(count)`` (the map's own sum when None), fewer when the map has fewer
    distinct maxima. ``cell`` is the map's stride in pixels of the counted image and ``scale``
    maps those pixels to the labelled image's (source width / counted width, and height).
    """
    d = np.nan_to_num(np.asarray(density, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    d = np.clip(d, 0.0, None)
    want = round(float(d.sum(dtype=np.float64)) if count is None else float(count))
    if want <= 0 or d.size == 0 or float(d.max()) <= 0:
        return np.zeros((0, 2))
    peak = (d >= cv2.dilate(d, np.ones((3, 3), np.uint8))) & (d > 0)
    rows, cols = np.nonzero(peak)
    order = np.argsort(-d[rows, cols], kind="stable")
    chosen: list[tuple[float, float]] = []
    padded = np.pad(d, 1)
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if any((r - cr) ** 2 + (c - cc) ** 2 < MIN_SEPARATION_CELLS ** 2 for cr, cc in chosen):
            continue
        chosen.append((r, c))
        if len(chosen) == want:
            break
    points = []
    for r, c in chosen:
        window = padded[r:r + 3, c:c + 3]  # the 3x3 neighbourhood: sub-cell position by its centroid
        total = float(window.sum())
        dy, dx = np.mgrid[-1:2, -1:2]
        fr = r + float((window * dy).sum()) / total
        fc = c + float((window * dx).sum()) / total
        points.append(((fc + 0.5) * cell * scale[0], (fr + 0.5) * cell * scale[1]))
    return np.asarray(points, dtype=float).reshape(-1, 2)
