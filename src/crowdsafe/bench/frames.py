"""A real frame to time on: the bundled street video, resized to each benchmark size.

Random noise would under-exercise nothing in a dense CNN, but a real image keeps the
benchmark honest if an engine ever skips work on zeros, and matches what cameras send.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from crowdsafe.counting.counter import to_batch


def video_frame(index: int = 30) -> np.ndarray:
    """One BGR frame of the bundled vtest.avi (a crowded pedestrian street)."""
    import cv2

    with resources.as_file(resources.files("crowdsafe").joinpath("data", "vtest.avi")) as path:
        capture = cv2.VideoCapture(str(path))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
        finally:
            capture.release()
    if not ok or frame is None:
        raise FileNotFoundError("cannot decode the bundled video crowdsafe/data/vtest.avi")
    return frame


def frame_batch(width: int, height: int, frame: np.ndarray | None = None) -> np.ndarray:
    """(1,3,height,width) float32 network input from a real frame."""
    import cv2

    frame = video_frame() if frame is None else frame
    resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return to_batch(resized)
