"""Offline int8 calibration: per-conv activation scales from real crowd images.

Scales calibrated on non-crowd images gave 2.5 % count drift: a density network's deep
activations are tiny and sparse except where heads are, so the range that matters is set
by crowds. We therefore run the fp32 graph on crowd TRAIN images with every conv input
exposed as an extra output, keep a histogram of each, and pick one per-tensor scale from
it. Test/dev images must never be used here, or the drift we report would be tuned on the
very images we report it on.

Each model gets its own table (``--model``): the sparse model's fine-tuned backend produces
other activation ranges than the dense one, so it is calibrated through its own fp32 graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crowdsafe.counting.graph import INPUT_NAME, Int8Plan, build_model, conv_names
from crowdsafe.counting.variants import ModelName, model_weights

#: Histogram resolution; the range doubles (merging bin pairs) whenever a larger value shows up.
BINS = 4096
#: uint8 activations with zero point 0: 255 steps between 0 and the clip value.
QMAX = 255
METHODS = ("max", "p99.9", "p99.99", "p99.999", "mse")
DEFAULT_METHOD = "max"
#: The first conv sees signed, normalised pixels with only 3 channels (cheap, and unsigned
#: uint8 would clip every negative value); the 1x1 output layer is ~0 FLOPs but writes the
#: density directly, so its error goes straight into the count.
DEFAULT_KEEP_FLOAT = ("frontend.0", "output_layer")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class ActivationHistogram:
    """Histogram of one tensor's non-negative part over many images.

    Negative values are dropped: the plan's uint8 zero point is 0, so they clip to 0 anyway.
    """

    bins: int = BINS
    top: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    maximum: float = 0.0

    def update(self, values: np.ndarray) -> None:
        flat = values.reshape(-1)
        peak = float(flat.max(initial=0.0))
        if peak <= 0.0:
            self.counts[0] += flat.size
            return
        if self.top == 0.0:
            self.top = peak
        while peak > self.top:  # widen by merging bin pairs; keeps earlier counts exact enough
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros_like(merged)])
            self.top *= 2.0
        hist, _ = np.histogram(np.maximum(flat, 0.0), bins=self.bins, range=(0.0, self.top))
        self.counts += hist
        self.maximum = max(self.maximum, peak)

    @property
    def width(self) -> float:
        return self.top / self.bins

    def percentile(self, pct: float) -> float:
        """Upper edge of the bin holding the pct-th percentile (never above the true max)."""
        cum = np.cumsum(self.counts)
        if cum[-1] == 0:
            return 0.0
        idx = int(np.searchsorted(cum, cum[-1] * pct / 100.0))
        return min((idx + 1) * self.width, self.maximum)

    def mse_threshold(self) -> float:
        """Clip value minimising expected squared error (rounding inside, clipping outside)."""
        centres = (np.arange(self.bins) + 0.5) * self.width
        n = self.counts.astype(np.float64)
        n_nonzero = n.copy()
        n_nonzero[0] = 0.0  # exact zeros (ReLU) quantise without error
        below = np.cumsum(n_nonzero)
        # sum over bins above k of n*(c - t)^2 expanded via suffix sums of n, n*c, n*c^2
        s0 = np.cumsum(n[::-1])[::-1]
        s1 = np.cumsum((n * centres)[::-1])[::-1]
        s2 = np.cumsum((n * centres**2)[::-1])[::-1]
        t = (np.arange(self.bins) + 1) * self.width
        above0 = np.append(s0[1:], 0.0)
        above1 = np.append(s1[1:], 0.0)
        above2 = np.append(s2[1:], 0.0)
        clip_err = above2 - 2 * t * above1 + t**2 * above0
        round_err = below * (t / QMAX) ** 2 / 12.0
        best = int(np.argmin(clip_err + round_err))
        return min(float(t[best]), self.maximum)

    def threshold(self, method: str) -> float:
        if method == "max":
            return self.maximum
        if method == "mse":
            return self.mse_threshold()
        if m := re.fullmatch(r"p(\d+(?:\.\d+)?)", method):
            return self.percentile(float(m.group(1)))
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")


class StatisticsCollector:
    """Runs one model's fp32 CSRNet in ONNX Runtime with every conv input as an extra output."""

    def __init__(self, threads: int | None = None, model_name: ModelName = "dense") -> None:
        import onnx
        import onnxruntime as ort

        model = build_model(model_weights(model_name))
        names = set(conv_names())
        self.tensors = {n.name: n.input[0] for n in model.graph.node
                        if n.op_type == "Conv" and n.name in names}
        for tensor in self.tensors.values():
            model.graph.output.append(onnx.ValueInfoProto(name=tensor))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self._session = ort.InferenceSession(model.SerializeToString(), opts,
                                             providers=["CPUExecutionProvider"])
        self._outputs = list(self.tensors.values())
        self.histograms = {name: ActivationHistogram() for name in self.tensors}
        self.images = 0

    def add(self, batch: np.ndarray) -> None:
        values = self._session.run(self._outputs, {INPUT_NAME: batch})
        for (conv, _), tensor in zip(self.tensors.items(), values, strict=True):
            self.histograms[conv].update(tensor)
        self.images += batch.shape[0]

    def scales(self, method: str) -> dict[str, float]:
        """Per-tensor scale = clip value / 255 (a tensor that never fires gets a tiny scale)."""
        return {conv: max(h.threshold(method), 1e-6) / QMAX for conv, h in self.histograms.items()}


def list_images(directory: Path) -> list[Path]:
    """Images of a folder in natural order (IMG_2 before IMG_10) so selections are stable."""
    def key(p: Path) -> tuple[int, str]:
        digits = re.findall(r"\d+", p.stem)
        return (int(digits[-1]) if digits else -1, p.name)
    return sorted((p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def select_images(directories: Sequence[Path], count: int, offset: float = 0.0) -> list[Path]:
    """``count`` images spread evenly over the folders and over each folder's range.

    ``offset`` (0..1 of a stride) picks a disjoint, equally spread set for validation.
    """
    if count < 1:
        raise ValueError("need at least one calibration image")
    chosen: list[Path] = []
    per_dir = [count // len(directories) + (i < count % len(directories))
               for i in range(len(directories))]
    for directory, n in zip(directories, per_dir, strict=True):
        files = list_images(directory)
        if not files:
            raise FileNotFoundError(f"no images in {directory}")
        if n == 0:
            continue
        stride = len(files) / n
        picks = sorted({int(k * stride + offset * stride) % len(files) for k in range(n)})
        chosen += [files[i] for i in picks]
    return chosen


def load_batch(path: Path, max_side: int | None) -> np.ndarray:
    """Image file -> (1,3,H,W) float32 RGB, downscaled to ``max_side`` and cut to the 8-pixel grid."""
    import cv2

    from crowdsafe.counting.counter import to_batch, validate_image

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    h, w = image.shape[:2]
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    image = validate_image(image[: h // 8 * 8, : w // 8 * 8])
    return to_batch(image)


def write_plan(path: Path, scales: dict[str, float], keep_float: Iterable[str],
               meta: dict[str, object]) -> Int8Plan:
    """Write the JSON plan engines.load_int8_plan reads; returns it as an Int8Plan."""
    missing = set(conv_names()) - set(scales)
    if missing:
        raise ValueError(f"plan lacks scales for {sorted(missing)}")
    keep = sorted(set(keep_float))
    unknown = set(keep) - set(conv_names())
    if unknown:
        raise ValueError(f"keep_float names unknown convs: {sorted(unknown)}")
    data = {"activation_scales": {k: float(f"{scales[k]:.8g}") for k in conv_names()},
            "keep_float": keep, "calibration": meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return Int8Plan(activation_scales=data["activation_scales"], keep_float=frozenset(keep))


def calibrate(directories: Sequence[Path], out: Path, images: int = 48,
              method: str = DEFAULT_METHOD, keep_float: Iterable[str] = DEFAULT_KEEP_FLOAT,
              max_side: int | None = 768, threads: int | None = None,
              model: ModelName = "dense") -> Int8Plan:
    """Collect ``model``'s statistics on ``images`` files from ``directories``; write the plan to ``out``."""
    if method not in METHODS and not re.fullmatch(r"p\d+(\.\d+)?", method):
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    paths = select_images(directories, images)
    collector = StatisticsCollector(threads, model)
    for p in paths:
        collector.add(load_batch(p, max_side))
    meta: dict[str, object] = {
        "model": model,
        "method": method, "images": len(paths), "max_side": max_side,
        "sources": sorted({p.parent.name for p in paths}),
    }
    return write_plan(out, collector.scales(method), keep_float, meta)
