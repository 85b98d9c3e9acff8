"""After training: fp16 drift, interval tables and the auto-choice threshold, on TRAIN data.

Everything here uses held-out TRAIN images only (the B validation split and a sample of A
train); the dev/test sets in shared/data/crowd are for `crowdsafe eval` alone. Counts come
from the cached features run through each model's tail in fp32, which is the same network
the ONNX engines run (up to engine rounding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from crowdsafe.counting.choice import is_dense_scene
from crowdsafe.counting.intervals import IntervalTable, fit_table
from crowdsafe.training.features import CachedSample
from crowdsafe.training.loop import Tail, predict_counts


@dataclass(frozen=True)
class Scored:
    name: str
    truth: float
    pixels: int
    dense: float
    sparse: float
    sparse_fp32: float


def fp16_round(layers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float16).astype(np.float32) for k, v in layers.items()}


def score(samples: list[CachedSample], base: dict[str, np.ndarray], cut: str,
          trained: dict[str, np.ndarray]) -> list[Scored]:
    dense_tail = Tail(cut, base)
    sparse_tail = Tail(cut, {**base, **fp16_round(trained)})
    fp32_tail = Tail(cut, {**base, **trained})
    with torch.no_grad():
        dense = predict_counts(dense_tail, samples, bf16=False)
        sparse = predict_counts(sparse_tail, samples, bf16=False)
        fp32 = predict_counts(fp32_tail, samples, bf16=False)
    out = []
    for s, d, sp, f in zip(samples, dense, sparse, fp32, strict=True):
        target = np.load(s.target)
        out.append(Scored(s.name, float(target.sum()), int(target.size * 64), d, sp, f))
    return out


def output_scale(scored: list[Scored]) -> float:
    """The factor on the (linear) output layer minimising validation MAE, searched in 0.5..2.

    Short CPU training leaves a systematic bias; the output conv has no activation after it,
    so scaling its weight and bias scales every count exactly. Fitted on the validation
    split only, which makes later validation numbers in-sample for this one parameter.
    """
    p = np.array([s.sparse for s in scored])
    t = np.array([s.truth for s in scored])
    grid = np.linspace(0.5, 2.0, 1501)
    return float(grid[int(np.argmin([np.abs(k * p - t).mean() for k in grid]))])


def apply_scale(layers16: dict[str, np.ndarray], k: float) -> dict[str, np.ndarray]:
    out = dict(layers16)
    for name in ("output_layer.weight", "output_layer.bias"):
        out[name] = (layers16[name].astype(np.float32) * k).astype(np.float16)
    return out


def scaled(scored: list[Scored], k: float) -> list[Scored]:
    return [Scored(s.name, s.truth, s.pixels, s.dense, s.sparse * k, s.sparse_fp32 * k)
            for s in scored]


def best_threshold(scored: list[Scored]) -> tuple[float, float]:
    """The per-megapixel threshold minimising mean relative error of the auto choice."""
    def rel_error(threshold: float) -> float:
        errs = []
        for s in scored:
            h_w = s.pixels
            use_dense = is_dense_scene(s.sparse, 1, h_w, threshold)
            pred = s.dense if use_dense else s.sparse
            errs.append(abs(pred - s.truth) / max(s.truth, 1.0))
        return float(np.mean(errs))
    densities = sorted(s.sparse / (s.pixels / 1e6) for s in scored)
    candidates = [(a + b) / 2 for a, b in itertools.pairwise(densities)]
    candidates += [densities[-1] + 1.0]
    best = min(candidates, key=rel_error)
    return best, rel_error(best)


def tables(b_val: list[Scored], a_sample: list[Scored], level: float = 0.9,
           k: float = 1.0, extra_sparse: list[Scored] | None = None) -> dict[str, IntervalTable]:
    """Interval tables. The sparse one is fitted on the B validation images, their resized
    copies (``extra_sparse``) and the A sample: every kind of scene it may be given."""
    extra = list(extra_sparse or [])
    own = b_val + extra + a_sample
    sparse = fit_table("sparse", [s.sparse for s in own], [s.truth for s in own], level,
                       fitted_on=f"{len(b_val)} ShanghaiTech B train images held out from training "
                                 f"(after the output scale k={k:.3f} fitted on the same images), "
                                 f"{len(extra)} resized copies of them and {len(a_sample)} "
                                 "ShanghaiTech A train images (never trained on)")
    both = b_val + a_sample
    dense = fit_table("dense", [s.dense for s in both], [s.truth for s in both], level,
                      fitted_on=f"{len(b_val)} ShanghaiTech B train (held out) + {len(a_sample)} "
                                "ShanghaiTech A train images (the dense model was trained on A "
                                "train, so its A residuals are optimistic)")
    return {"dense": dense, "sparse": sparse}
