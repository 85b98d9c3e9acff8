"""Commissioning fine-tune: a camera's own output layer, fitted on its annotated frames, on CPU.

What ``crowdsafe tune --finetune`` adds. The network up to the last back-end conv
(``backend.10``, 64 channels at 1/8 resolution) runs once per annotated frame; only sums over
the frame's cells are kept: the 65x65 Gram matrix of the cell features, their sums and their
products with the frame's density target. The output layer (a 1x1 conv, 65 numbers) is then
refitted in closed form (ridge least squares), as often as cross-validation needs, in
milliseconds. NumPy only: no torch in the core install, and no frame, feature map or image is
kept beyond the one step that reduces it to those sums.

The objective per frame is the pixel-wise squared error against the Gaussian density target
(where each head's mass goes) plus ``count_weight`` times the squared error of the frame's
total (what the count is judged on), plus a ridge term scaled by the Gram matrix's trace, so
one ``ridge`` value means the same on any camera (features from 800 near-copies of one view are
strongly collinear: unshrunk, the refit follows their noise). Several ridges are candidates;
cross-validation chooses.

Why only the output layer: training the last 3x3 conv as well (torch, bf16, whole frames) cost
about 1.5 s a step on the shared two-core machine and had not reached the published layer's
validation error after 300 steps; the closed-form refit is what fits the time a commissioning
may take. Measured numbers: docs/results/accuracy.md, "A second real camera".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crowdsafe.counting.counter import to_batch, validate_image
from crowdsafe.counting.graph import INPUT_NAME
from crowdsafe.counting.tuning import folds_of, region_sums
from crowdsafe.counting.variants import model_weights
from crowdsafe.training.data import density_target

#: The conv whose ReLU output the fitted layer reads, and the layer fitted.
CUT = "backend.10"
LAYER = "output_layer"
#: Target kernel (input pixels): wider than a head, so a 1x1 layer on 1/8-resolution features
#: can follow it; the total per frame is what the count term holds.
SIGMA_PX = 8.0
COUNT_WEIGHT = 1.0
#: Chosen on the Mall camera's training frames only (fitted on 1-600, scored on 601-800, dense
#: features in bf16): validation MAE 1.96 / 1.95 / 2.06 / 4.22 for these, 2.53 unshrunk.
RIDGES = (1e-6, 1e-5, 1e-4, 1e-3)


class FineTuneError(ValueError):
    """The frames cannot be fitted (too few, features missing); the message says why."""


@dataclass
class FrameSums:
    """Everything the closed-form refit needs of the annotated frames (no feature map kept)."""

    gram: list[np.ndarray] = field(default_factory=list)  # (65, 65) per frame
    sums: list[np.ndarray] = field(default_factory=list)  # (65,) per frame
    regions: list[np.ndarray] = field(default_factory=list)  # (16, 65): sums per GAME(2) region
    cross: list[np.ndarray] = field(default_factory=list)  # (65,) features x target per frame
    people: list[float] = field(default_factory=list)
    activation_max: float = 0.0  # the fitted layer's input range on these frames (int8 scale)

    def add(self, features: np.ndarray, target: np.ndarray, people: float) -> None:
        """One frame's ``features`` (64, h, w) and density ``target`` (h, w)."""
        x = np.asarray(features, np.float64).reshape(features.shape[0], -1)
        x = np.concatenate([x, np.ones((1, x.shape[1]))])
        self.gram.append(x @ x.T)
        self.sums.append(x.sum(axis=1))
        cells = x.reshape(x.shape[0], *features.shape[1:])
        self.regions.append(np.stack([region_sums(channel) for channel in cells], axis=1))
        self.cross.append(x @ np.asarray(target, np.float64).ravel())
        self.people.append(float(people))
        self.activation_max = max(self.activation_max, float(np.max(features)))

    def __len__(self) -> int:
        return len(self.people)


@dataclass(frozen=True)
class OutputLayer:
    """The refitted 1x1 output conv: weight (1, 64, 1, 1) and bias (1,)."""

    weight: np.ndarray
    bias: np.ndarray
    ridge: float

    @classmethod
    def from_vector(cls, w: np.ndarray, ridge: float) -> OutputLayer:
        return cls(np.asarray(w[:-1], np.float32).reshape(1, -1, 1, 1),
                   np.asarray(w[-1:], np.float32), ridge)

    def layers(self) -> dict[str, np.ndarray]:
        return {f"{LAYER}.weight": self.weight, f"{LAYER}.bias": self.bias}

    def count(self, sums: np.ndarray) -> np.ndarray:
        """Frame totals from the frames' feature sums (the 1x1 conv summed over the frame)."""
        vector = np.concatenate([self.weight.ravel(), self.bias]).astype(np.float64)
        return np.asarray(sums, np.float64) @ vector


def fit_layer(data: FrameSums, frames: Sequence[int] | np.ndarray, ridge: float,
              count_weight: float = COUNT_WEIGHT) -> OutputLayer:
    """Ridge least squares of the pixel and count errors over ``frames`` (indices into ``data``)."""
    idx = np.asarray(frames, int)
    if idx.size == 0:
        raise FineTuneError("no frames to fit the output layer on")
    gram = np.sum([data.gram[i] for i in idx], axis=0)
    sums = np.stack([data.sums[i] for i in idx])
    people = np.asarray([data.people[i] for i in idx])
    matrix = gram + count_weight * sums.T @ sums
    rhs = np.sum([data.cross[i] for i in idx], axis=0) + count_weight * sums.T @ people
    k = matrix.shape[0]
    penalty = ridge * np.trace(matrix) / k * np.eye(k)
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return OutputLayer.from_vector(np.linalg.solve(matrix + penalty, rhs), ridge)


def cross_validated(data: FrameSums, ridge: float, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-block totals and GAME(2) region counts: each contiguous block counted by a layer
    fitted on the other blocks (neighbouring frames are near copies: random folds would leak)."""
    n = len(data)
    sums, regions = np.stack(data.sums), np.stack(data.regions)
    pred, pred_regions = np.zeros(n), np.zeros(regions.shape[:2])
    for block in folds_of(n, folds):
        layer = fit_layer(data, np.setdiff1d(np.arange(n), block), ridge)
        pred[block] = layer.count(sums[block])
        pred_regions[block] = layer.count(regions[block])
    return pred, pred_regions


#: The layers the dense and sparse models share (the sparse model replaces backend.4 onwards):
#: the commissioning pass runs them once per frame for both.
SHARED_UNTIL = "backend.2"


@dataclass(frozen=True)
class PassOutput:
    """One frame through the commissioning pass: the dense features the refit reads and each
    shipped model's density map (what their candidates are scored on)."""

    features: np.ndarray  # (64, h, w): the ReLU output of ``CUT``
    maps: dict[str, np.ndarray]  # model -> (h, w) density


class CommissionPass:
    """Every annotated frame once through one graph: the layers both shipped models share, then
    the dense branch up to ``CUT`` (the features the refit reads; the published output layer on
    them is the dense model's map) and the sparse branch to its density.

    One pass gives every candidate its counts on the same frames (the shipped settings and the
    fine-tuned layer, compared apples to apples) for about the cost of one model, and the
    fine-tuned candidate's interval then needs no second counting pass. Precision: int8 (the
    shipped calibration tables) under OpenVINO, the fastest there at a count drift well inside
    the error being fitted (benchmarks/mall_pass_precision.py); fp32 under ONNX Runtime when
    OpenVINO is not installed.
    """

    def __init__(self, threads: int | None = None, precision: str | None = None) -> None:
        from crowdsafe.counting.engines import cpu_has_bf16, load_int8_plan
        from crowdsafe.counting.graph import build_branched

        try:
            import openvino as ov
        except ImportError:
            ov = None
        self.precision = precision or ("int8" if ov is not None else "fp32")
        if ov is None and self.precision != "fp32":
            raise FineTuneError(f"precision {self.precision} for commissioning needs OpenVINO")
        dense = model_weights("dense")
        self._output = (dense[f"{LAYER}.weight"].reshape(-1).astype(np.float32),
                        float(dense[f"{LAYER}.bias"].reshape(-1)[0]))
        plans = None
        if self.precision == "int8":
            plans = {"": load_int8_plan("dense"), "features": load_int8_plan("dense"),
                     "sparse": load_int8_plan("sparse")}
        proto = build_branched(dense, SHARED_UNTIL, {"features": (dense, CUT),
                                                     "sparse": (model_weights("sparse"), None)},
                               plans).SerializeToString()
        self._compiled: dict[tuple[int, ...], object] = {}
        if ov is not None:
            self._core = ov.Core()
            self._model = self._core.read_model(proto, b"")
            hint = "bf16" if self.precision in ("bf16", "int8") and cpu_has_bf16() else "f32"
            self._config: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint,
                                               "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                self._config["INFERENCE_NUM_THREADS"] = int(threads)
            self._session = None
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
            self._session = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])

    def __call__(self, image_bgr: np.ndarray) -> PassOutput:
        batch = to_batch(validate_image(image_bgr))
        if self._session is not None:
            features, sparse = self._session.run(["features", "sparse"], {INPUT_NAME: batch})
        else:
            from crowdsafe.training.features import compiled_for

            compiled = compiled_for(self._core, self._model, self._config, self._compiled, tuple(batch.shape))
            result = compiled({INPUT_NAME: batch})
            features, sparse = result["features"], result["sparse"]
        features = np.asarray(features, np.float32)[0]
        weight, bias = self._output
        dense = np.tensordot(weight, features, axes=1) + np.float32(bias)
        return PassOutput(features, {"dense": dense.astype(np.float32),
                                     "sparse": np.asarray(sparse, np.float32)[0, 0]})


def frame_target(points: np.ndarray, height: int, width: int) -> np.ndarray:
    return density_target(np.asarray(points, np.float32).reshape(-1, 2), height, width, SIGMA_PX)


@dataclass(frozen=True)
class FineTuned:
    """One fitted candidate: its layer (fitted on every frame), out-of-block totals and region
    counts per frame."""

    layer: OutputLayer
    predicted: np.ndarray
    predicted_regions: np.ndarray


def fit_candidates(data: FrameSums, folds: int, ridges: Sequence[float] = RIDGES) -> list[FineTuned]:
    """Each ridge's cross-validated totals and its layer refitted on all frames."""
    if len(data) < 2 * folds:
        raise FineTuneError(f"need at least {2 * folds} annotated frames to fine-tune with {folds} folds; "
                            f"got {len(data)}")
    out = []
    for ridge in ridges:
        pred, regions = cross_validated(data, ridge, folds)
        out.append(FineTuned(fit_layer(data, np.arange(len(data)), ridge), pred, regions))
    return out


def int8_scale(data: FrameSums) -> float:
    """The fitted layer's input scale for uint8 (the 'max' method of ``counting.calibrate``)."""
    top = data.activation_max
    return top / 255.0 if top > 0 and math.isfinite(top) else 1.0
