"""Frames, synthetic textures and a memoising counter, shared by the counting, background-density
and tuning tests (a test module never imports another one)."""

from __future__ import annotations

import hashlib
from importlib import resources

import cv2
import numpy as np

from crowdsafe.counting.counter import Counts, DensityCounter, DensityResult


def video_crop(frame_index: int, y: int, x: int, h: int, w: int) -> np.ndarray:
    """A real crop (RGB) of the bundled sample video, where people walk."""
    path = resources.files("crowdsafe") / "data" / "vtest.avi"
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
    ok, frame = cap.read()
    cap.release()
    assert ok, "bundled sample video could not be decoded"
    return np.ascontiguousarray(frame[y:y + h, x:x + w, ::-1])


def video_batch() -> np.ndarray:
    """A real crop of the sample video as one network input (1, 3, 128, 160), float32 RGB."""
    rgb = video_crop(200, 180, 200, 128, 160)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)


class MemoCounter:
    """The real counter, asked once per distinct image: a looped still is the same input every
    frame and the network is deterministic, so an hour of frames costs one inference."""

    def __init__(self, counter: DensityCounter) -> None:
        self.counter = counter
        self.cache: dict[str, DensityResult] = {}

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        key = hashlib.sha1(np.ascontiguousarray(image_bgr).tobytes()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.counter.count(image_bgr)
        return self.cache[key]


def blob(shape: tuple[int, int], at: tuple[int, int], mass: float, sigma: float = 1.5) -> np.ndarray:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    g = np.exp(-((rows - at[0]) ** 2 + (cols - at[1]) ** 2) / (2 * sigma ** 2))
    return (mass * g / g.sum()).astype(np.float32)


def texture(shape: tuple[int, int] = (60, 80), seed: int = 3) -> np.ndarray:
    """A thin static 'texture floor' like the models find on kerbs and lawns: ~8 people spread out."""
    rng = np.random.default_rng(seed)
    return (rng.gamma(0.5, 8.0 / (0.5 * shape[0] * shape[1]), shape)).astype(np.float32)


def uses(counter: Counts) -> dict[str, object]:
    """``CliRunner.invoke(..., obj=uses(counter))``: the command counts with ``counter`` instead of
    starting its own engine (the CLI's seam, ``cli.options.counter_factory``)."""
    return {"make_counter": lambda spec: counter}
