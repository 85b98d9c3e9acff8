"""An independent NumPy CSRNet, written from the paper's layer table, to check the ONNX graph.

It shares no code with crowdsafe.counting.graph: the layer list, padding, dilation and
normalisation are restated here so a mistake in the graph builder cannot hide in both.
Float64 throughout, so it is the more exact of the two.
"""

from __future__ import annotations

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
# (state-dict name, dilation) in order, "M" for a 2x2 max-pool.
LAYERS = [
    ("frontend.0", 1), ("frontend.2", 1), "M",
    ("frontend.5", 1), ("frontend.7", 1), "M",
    ("frontend.10", 1), ("frontend.12", 1), ("frontend.14", 1), "M",
    ("frontend.17", 1), ("frontend.19", 1), ("frontend.21", 1),
    ("backend.0", 2), ("backend.2", 2), ("backend.4", 2),
    ("backend.6", 2), ("backend.8", 2), ("backend.10", 2),
    ("output_layer", 1),
]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int) -> np.ndarray:
    """'Same' convolution of (C,H,W) by (O,C,k,k), zero padding dilation*(k//2)."""
    k = w.shape[2]
    pad = dilation * (k // 2)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h, wd = x.shape[1:]
    out = np.zeros((w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i * dilation:i * dilation + h, j * dilation:j * dilation + wd]
            out += np.tensordot(w[:, :, i, j], patch, axes=([1], [0]))
    return out + b[:, None, None]


def maxpool2(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :h2 * 2, :w2 * 2].reshape(c, h2, 2, w2, 2).max(axis=(2, 4))


def density(image_rgb: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (H/8,W/8) density, float64."""
    x = ((image_rgb.astype(np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    for layer in LAYERS:
        if layer == "M":
            x = maxpool2(x)
            continue
        name, dilation = layer
        x = conv2d(x, weights[f"{name}.weight"].astype(np.float64),
                   weights[f"{name}.bias"].astype(np.float64), dilation)
        if name != "output_layer":
            x = np.maximum(x, 0.0)
    return x[0]
