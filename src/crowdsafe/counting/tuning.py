"""Per-camera commissioning: model, background subtraction and gain chosen from a few annotated frames.

Why and how: docs/design-notes.md, ``crowdsafe.counting.tuning``."""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from crowdsafe.counting.finetuned import LayersRef, verify_layers
from crowdsafe.counting.intervals import IntervalTable, coverage, fit_table
from crowdsafe.counting.weights import WeightsError
from crowdsafe.measure.background import near_empty, subtract_background

log = logging.getLogger(__name__)

TUNING_VERSION = 1
#: Gains outside this range mean the labels and the camera do not belong together.
GAIN_RANGE = (0.1, 10.0)
#: A background is learned only from at least this many near-empty frames.
MIN_BACKGROUND_FRAMES = 3
#: A cell counts as free in a frame when no annotated head lies within this many cells of it:
#: the models spread a head over about a 3-cell blob at 1/8 resolution.
FREE_RADIUS_CELLS = 3
#: The selection criterion's grid: GAME(L) splits the frame into 2^L x 2^L regions.
GAME_LEVEL = 2


class TuningError(ValueError):
    """A tuning file that cannot be used, or frames that cannot be tuned on; the message says why."""


@dataclass(frozen=True)
class Candidate:
    """One (model, background, gain fitted or not) setting with its cross-validated error.

    The unfitted gain (1) competes with the fitted one because a gain fitted on a few seconds of
    video also learns what is peculiar to them (people the labels hold but no camera sees);
    cross-validation across blocks is what tells whether it generalises.
    """

    model: str
    background: bool
    gain: float
    cv_mae: float
    cv_bias: float
    cv_game: float = math.nan
    gain_fitted: bool = True
    #: The model's output layer refitted on the camera's own frames (``tune --finetune``), and
    #: the ridge it was fitted with.
    finetuned: bool = False
    ridge: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "background": self.background, "gain": self.gain,
                "gain_fitted": self.gain_fitted, "finetuned": self.finetuned, "ridge": self.ridge,
                "cv_mae": self.cv_mae, "cv_bias": self.cv_bias, "cv_game": self.cv_game}

    def same_setting(self, tuning: CameraTuning) -> bool:
        """Whether ``tuning`` is this candidate (what ``tune`` marks as chosen)."""
        if self.finetuned or tuning.layers is not None:
            return self.finetuned and tuning.layers is not None and \
                self.ridge == tuning.finetune.get("ridge")
        return (self.model, self.background, self.gain) == (tuning.model, tuning.background, tuning.gain)


@dataclass(frozen=True)
class CameraTuning:
    """What ``crowdsafe tune`` chose for one camera; applied by the runtime to every frame."""

    camera: str
    model: str
    background: bool
    gain: float
    interval: IntervalTable
    background_density: np.ndarray | None = None
    cv_mae: float = math.nan
    cv_coverage: float = math.nan
    frames: list[int] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    source: str = ""
    #: (predicted, annotated) pairs the interval was fitted on; not written to the file.
    calibration: tuple[tuple[float, float], ...] = field(default=(), compare=False, repr=False)
    #: The camera's fine-tuned last layers (a file next to the tuning file), or None.
    layers: LayersRef | None = None
    #: How the layers were trained (frames, steps, seconds, feature precision): for the record.
    finetune: dict[str, Any] = field(default_factory=dict)

    @property
    def model_key(self) -> str:
        """What selects this camera's engine: the model, or the model with its own layers."""
        return self.model if self.layers is None else self.layers.key

    @property
    def commissioned_precision(self) -> str | None:
        """The precision the fine-tuned layers were fitted on features of (None without layers,
        or from a file that did not record it): the one to count this camera in by default."""
        if self.layers is None:
            return None
        value = self.finetune.get("feature_precision")
        return value if isinstance(value, str) else None

    def apply(self, density: np.ndarray) -> np.ndarray:
        """The frame's density with this camera's background removed (if chosen) and its gain."""
        out = density
        if self.background and self.background_density is not None:
            if self.background_density.shape != density.shape:
                raise TuningError(f"camera {self.camera}: the tuning's background is "
                                  f"{self.background_density.shape} cells but the frame's density is "
                                  f"{density.shape}; re-run `crowdsafe tune` at this resolution")
            out = subtract_background(out, self.background_density)
        return (out * np.float32(self.gain)).astype(np.float32, copy=False)

    def count_interval(self, count: float) -> tuple[float, float]:
        return self.interval.interval(count)

    def as_dict(self) -> dict[str, Any]:
        bg = self.background_density
        return {
            "version": TUNING_VERSION, "camera": self.camera, "model": self.model,
            "background": self.background, "gain": self.gain,
            "interval": self.interval.as_dict(),
            "expected": {"cv_mae": self.cv_mae, "cv_coverage": self.cv_coverage,
                         "frames": len(self.frames)},
            "frames": self.frames, "candidates": [c.as_dict() for c in self.candidates],
            "background_density": None if bg is None else {
                "shape": list(bg.shape),
                "values": [float(f"{v:.6g}") for v in bg.astype(np.float64).ravel()]},
            "weights": None if self.layers is None else {
                "file": Path(self.layers.path).name, "sha256": self.layers.sha256,
                "base": self.layers.base,
                "int8_activation_scales": dict(self.layers.activation_scales),
                "finetune": self.finetune},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> CameraTuning:
        try:
            if int(data.get("version", 0)) != TUNING_VERSION:
                raise TuningError(f"{source}: tuning version {data.get('version')!r}; this crowdsafe reads "
                                  f"version {TUNING_VERSION}")
            bg = data.get("background_density")
            density = None
            if bg is not None:
                density = np.asarray(bg["values"], np.float32).reshape(tuple(bg["shape"]))
            model = str(data["model"])
            if model not in ("dense", "sparse"):
                raise TuningError(f"{source}: model {model!r}; expected dense or sparse")
            gain = float(data["gain"])
            if not GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]:
                raise TuningError(f"{source}: gain {gain} outside {GAIN_RANGE}")
            expected = data.get("expected", {})
            layers, finetune = None, {}
            if (weights := data.get("weights")) is not None:
                name = str(weights["file"])
                if Path(name).name != name:
                    raise TuningError(f"{source}: weights file {name!r} must be a plain file name "
                                      "(it lives next to the tuning file)")
                base = str(weights.get("base", "dense"))
                if base not in ("dense", "sparse") or base != model:
                    raise TuningError(f"{source}: fine-tuned weights on {base!r} for model {model!r}")
                folder = Path(source).parent if source else Path(".")
                layers = LayersRef(str(folder / name), str(weights["sha256"]), base,  # type: ignore[arg-type]
                                   tuple(sorted((str(k), float(v)) for k, v in
                                                weights.get("int8_activation_scales", {}).items())))
                finetune = dict(weights.get("finetune", {}))
            return cls(camera=str(data["camera"]), model=model, background=bool(data["background"]),
                       gain=gain, interval=IntervalTable.from_dict(data["interval"]),
                       background_density=density,
                       cv_mae=float(expected.get("cv_mae", math.nan)),
                       cv_coverage=float(expected.get("cv_coverage", math.nan)),
                       frames=[int(f) for f in data.get("frames", [])],
                       candidates=[Candidate(**c) for c in data.get("candidates", [])], source=source,
                       layers=layers, finetune=finetune)
        except TuningError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise TuningError(f"{source}: not a crowdsafe tuning file ({exc})") from None


def load_tuning(path: Path | str) -> CameraTuning:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuningError(f"{path}: tuning file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TuningError(f"{path}: cannot read tuning ({exc})") from None
    if not isinstance(data, dict):
        raise TuningError(f"{path}: not a crowdsafe tuning file")
    tuning = CameraTuning.from_dict(data, str(path))
    if tuning.layers is not None:
        try:  # refused here, before any engine starts, as well as by every engine that loads them
            verify_layers(tuning.layers)
        except WeightsError as exc:
            raise TuningError(f"{path}: {exc}") from None
    return tuning


def save_tuning(tuning: CameraTuning, path: Path | str) -> None:
    Path(path).write_text(json.dumps(tuning.as_dict()) + "\n", encoding="utf-8")


def site_tunings(site: Any) -> dict[str, CameraTuning]:
    """Each camera's tuning named in the site file (``cameras[i].tuning``).

    A tuning file that is not there (a site file copied without it) leaves that camera untuned,
    with a warning, rather than stopping the site: the camera still counts, as every untuned
    camera does, and its health says it is not tuned. A file that is there but wrong is an error.
    """
    out = {}
    for camera in site.cameras:
        if getattr(camera, "tuning", None):
            path = site.resolve_path(camera.tuning)
            if not Path(path).is_file():
                log.warning("camera %s: tuning file %s not found; counting untuned", camera.id, path)
                continue
            tuning = load_tuning(path)
            if tuning.camera != camera.id:
                raise TuningError(f"{camera.tuning}: tuned for camera {tuning.camera!r}, named by "
                                  f"camera {camera.id!r}")
            out[camera.id] = tuning
    return out


def learn_background(maps: Sequence[np.ndarray], frame_max_window_people: float = 4.0,
                     background_max_window_people: float = 2.0) -> np.ndarray | None:
    """Per-cell median of the near-empty maps; None if too few, or if the median holds a crowd."""
    quiet = [m for m in maps if near_empty(m, frame_max_window_people)]
    if len(quiet) < MIN_BACKGROUND_FRAMES:
        return None
    median = np.median(np.stack(quiet), axis=0).astype(np.float32)
    return median if near_empty(median, background_max_window_people) else None


def folds_of(n: int, k: int) -> list[np.ndarray]:
    """Contiguous blocks: neighbouring frames are near copies, so random folds would leak."""
    return [b for b in np.array_split(np.arange(n), min(k, n)) if len(b)]


def _gain(raw: np.ndarray, truth: np.ndarray) -> float:
    total = float(raw.sum())
    if total <= 0:
        return 1.0
    return float(np.clip(truth.sum() / total, *GAIN_RANGE))


def cross_validate(raw: np.ndarray, truth: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Out-of-block predictions (gain fitted on the other blocks) and the all-frame gain."""
    pred = np.zeros_like(raw)
    for block in folds_of(len(raw), k):
        train = np.setdiff1d(np.arange(len(raw)), block)
        gain = _gain(raw[train], truth[train]) if len(train) else 1.0
        pred[block] = gain * raw[block]
    return pred, _gain(raw, truth)


def _cells_of(points: np.ndarray, map_shape: tuple[int, ...], image_size: tuple[int, int]) -> np.ndarray:
    """Annotated pixels → (row, col) of the density cell they fall in (clipped to the map)."""
    h, w = map_shape[:2]
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    col = np.clip((pts[:, 0] * w / image_size[0]).astype(int), 0, w - 1)
    row = np.clip((pts[:, 1] * h / image_size[1]).astype(int), 0, h - 1)
    return np.stack([row, col], axis=1)


def occupied_cells(points: np.ndarray, map_shape: tuple[int, ...], image_size: tuple[int, int],
                   radius: int = FREE_RADIUS_CELLS) -> np.ndarray:
    """Boolean map: cells within ``radius`` cells (Chebyshev) of an annotated head."""
    occupied = np.zeros(map_shape[:2], bool)
    for r, c in _cells_of(points, map_shape, image_size):
        occupied[max(r - radius, 0):r + radius + 1, max(c - radius, 0):c + radius + 1] = True
    return occupied


def labelled_background(maps: Sequence[np.ndarray], points: Sequence[np.ndarray],
                        image_size: tuple[int, int], radius: int = FREE_RADIUS_CELLS) -> np.ndarray | None:
    """Per cell, the median density of the frames where the labels put nobody near it; 0 where
    fewer than ``MIN_BACKGROUND_FRAMES`` frames leave the cell free (never subtract people).
    None when no cell is free often enough (or the maps disagree in shape)."""
    if not maps or len({m.shape for m in maps}) != 1:
        return None
    stack = np.stack([np.asarray(m, np.float32) for m in maps])
    free = ~np.stack([occupied_cells(p, stack.shape[1:], image_size, radius) for p in points])
    masked = np.where(free, stack, np.nan)
    enough = free.sum(axis=0) >= MIN_BACKGROUND_FRAMES
    if not enough.any():
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: never free, handled below
        median = np.nanmedian(masked, axis=0)
    # The models' maps dip slightly below zero on empty floor; a negative background would add
    # people where it is subtracted.
    return np.where(enough, np.maximum(np.nan_to_num(median), 0.0), 0.0).astype(np.float32)


def region_sums(density: np.ndarray, level: int = GAME_LEVEL) -> np.ndarray:
    """People in each of the 2^level x 2^level regions of a map (row-major)."""
    n = 2 ** level
    rows = np.array_split(np.arange(density.shape[0]), n)
    cols = np.array_split(np.arange(density.shape[1]), n)
    return np.array([float(density[np.ix_(r, c)].sum(dtype=np.float64)) for r in rows for c in cols])


def region_truth(points: np.ndarray, map_shape: tuple[int, ...], image_size: tuple[int, int],
                 level: int = GAME_LEVEL) -> np.ndarray:
    """Annotated people in each region of ``region_sums``."""
    marks = np.zeros(map_shape[:2], np.float64)
    for r, c in _cells_of(points, map_shape, image_size):
        marks[r, c] += 1.0
    return region_sums(marks, level)


def fit_tuning(camera: str, maps: Mapping[str, Sequence[np.ndarray]], truth: Sequence[float],
               frames: Sequence[int], *, folds: int = 5, level: float = 0.9,
               frame_max_window_people: float = 4.0,
               background_max_window_people: float = 2.0,
               points: Sequence[np.ndarray] | None = None,
               image_size: tuple[int, int] | None = None) -> CameraTuning:
    """Choose model, background and gain by cross-validation; fit the conformal interval.

    With ``points`` (each frame's annotated heads, pixels of an ``image_size`` frame) the
    background is learned where the labels put nobody, and the choice minimises the regional
    error GAME(2); without them, the near-empty-frame background and the whole-frame MAE.
    """
    t = np.asarray(truth, np.float64)
    if len(t) < 2 * folds:
        raise TuningError(f"need at least {2 * folds} annotated frames to tune with {folds} folds; "
                          f"got {len(t)}")
    labelled = points is not None and image_size is not None
    if labelled and len(points or []) != len(t):
        raise TuningError(f"{len(points or [])} point lists for {len(t)} annotated frames")
    candidates: list[tuple[Candidate, np.ndarray, np.ndarray | None]] = []
    for model, model_maps in maps.items():
        if len(model_maps) != len(t):
            raise TuningError(f"{model}: {len(model_maps)} maps for {len(t)} annotated frames")
        if labelled:
            assert points is not None and image_size is not None
            background = labelled_background(model_maps, points, image_size)
            regions_truth = np.stack([region_truth(p, model_maps[0].shape, image_size) for p in points])
        else:
            background = learn_background(model_maps, frame_max_window_people, background_max_window_people)
        for use_bg in (False, True):
            if use_bg and background is None:
                continue
            corrected = [subtract_background(m, background) if use_bg and background is not None else m
                         for m in model_maps]
            raw = np.array([float(m.sum(dtype=np.float64)) for m in corrected])
            regions = np.stack([region_sums(m) for m in corrected]) if labelled else None
            for fitted in (True, False):
                pred, gain = cross_validate(raw, t, folds) if fitted else (raw.copy(), 1.0)
                game = math.nan
                if regions is not None:
                    # The out-of-block gain of each frame is pred / raw (same gain for every region).
                    fold_gain = np.divide(pred, raw, out=np.ones_like(raw), where=raw > 0)
                    game = float(np.abs(regions * fold_gain[:, None] - regions_truth).sum(axis=1).mean())
                cand = Candidate(model, use_bg, gain, float(np.abs(pred - t).mean()),
                                 float((pred - t).mean()), game, gain_fitted=fitted)
                candidates.append((cand, pred, background if use_bg else None))
    if not candidates:
        raise TuningError("no model counted the frames")
    best, pred, background = min(candidates, key=lambda c: c[0].cv_game if labelled else c[0].cv_mae)
    table = fit_table(best.model, pred.tolist(), t.tolist(), level=level, min_per_bin=len(t) + 1,
                      fitted_on=f"camera {camera}: out-of-block predictions on {len(t)} annotated frames")
    return CameraTuning(camera=camera, model=best.model, background=best.background, gain=best.gain,
                        interval=table, background_density=background, cv_mae=best.cv_mae,
                        cv_coverage=coverage(table, pred.tolist(), t.tolist()), frames=list(frames),
                        candidates=[c for c, _, _ in candidates],
                        calibration=tuple(zip(pred.tolist(), t.tolist(), strict=True)))


def with_finetuned(tuning: CameraTuning, model: str,
                   finetuned: Sequence[tuple[float, np.ndarray, np.ndarray]],
                   truth: Sequence[float], frames: Sequence[int],
                   regions_truth: np.ndarray, *, level: float = 0.9,
                   folds: int = 5) -> tuple[CameraTuning, int | None]:
    """``tuning`` with fine-tuned candidates added, and switched to the best of them if it wins.

    ``finetuned``: per candidate, (ridge, out-of-block totals, GAME(2) region counts) on the
    annotated ``frames`` (``truth`` people each, ``regions_truth`` per region): the frames the
    shipped settings of ``tuning`` were scored on, in the same contiguous blocks. A fine-tuned
    candidate wins only when its cross-validated MAE plus GAME(2) (the count, and the count in
    place) is lower than every shipped setting's: by GAME(2) alone, a background subtracted from
    a never-empty camera can tie a layer that counts far better in total (docs/results/accuracy.md,
    the Mall). A winner's interval is fitted on its out-of-block totals (``calibration`` holds
    them) block by block (``typical_block_table``, ``folds`` blocks).
    Returns the tuning and the winner's index (None: a shipped setting stays chosen).
    """
    t = np.asarray(truth, np.float64)
    if len(t) != len(tuning.frames) or len(regions_truth) != len(t):
        raise TuningError(f"fine-tuned candidates scored on {len(t)} frames, the shipped settings "
                          f"on {len(tuning.frames)}: they must be compared on the same frames")
    scored = []
    for ridge, pred, regions in finetuned:
        err = pred - t
        game = float(np.abs(regions - regions_truth).sum(axis=1).mean())
        scored.append(Candidate(model, False, 1.0, float(np.abs(err).mean()), float(err.mean()), game,
                                gain_fitted=False, finetuned=True, ridge=ridge))
    candidates = [*tuning.candidates, *scored]
    best_base = min((c.cv_mae + c.cv_game for c in tuning.candidates), default=math.inf)
    winner = min(range(len(scored)), key=lambda i: scored[i].cv_mae + scored[i].cv_game, default=None)
    if winner is None or not scored[winner].cv_mae + scored[winner].cv_game < best_base:
        return replace(tuning, candidates=candidates), None
    pred = np.asarray(finetuned[winner][1], np.float64)
    table = typical_block_table(model, pred, t, folds, level=level,
                                fitted_on=f"camera {tuning.camera}: out-of-block predictions of the "
                                          f"fine-tuned layer on {len(t)} annotated frames, "
                                          f"median of {folds} blocks' quantiles")
    return CameraTuning(camera=tuning.camera, model=model, background=False, gain=1.0, interval=table,
                        cv_mae=float(np.abs(pred - t).mean()),
                        cv_coverage=coverage(table, pred.tolist(), t.tolist()), frames=list(frames),
                        candidates=candidates, calibration=tuple(zip(pred.tolist(), t.tolist(), strict=True))
                        ), winner


def typical_block_table(model: str, predicted: np.ndarray, truth: np.ndarray, blocks: int, *,
                        level: float = 0.9, fitted_on: str = "") -> IntervalTable:
    """One interval bin whose bounds are the median over contiguous blocks of each block's own
    quantiles of the log-ratio residual (the residual of ``intervals.fit_table``).

    Why not the pooled conformal quantile: a camera's errors come in stretches (a period the
    layer counts a few people low, another high), so the pooled residuals of several periods
    are wider than those of any one, and the pooled interval over-covers the stretch that
    follows commissioning. This is the interval of a typical stretch; a stretch unlike the
    commissioning frames can fall well short of its level (how it was chosen, on training frames
    only, and what it covered: docs/results/accuracy.md, the Mall).
    """
    r = np.log((truth + 1.0) / (np.maximum(predicted, 0.0) + 1.0))
    alpha = (1.0 - level) / 2.0
    parts = folds_of(len(r), blocks)
    lo = float(np.median([np.quantile(r[b], alpha) for b in parts]))
    hi = float(np.median([np.quantile(r[b], 1.0 - alpha) for b in parts]))
    return IntervalTable(model, level, (math.inf,), (lo,), (hi,), fitted_on)


def calibrate_interval(tuning: CameraTuning, pairs: Sequence[tuple[float, float]], frames: Sequence[int],
                       *, level: float = 0.9) -> CameraTuning:
    """The tuning with its interval refitted on its own out-of-block pairs plus ``pairs``.

    ``pairs`` are (count with the chosen setting, annotated people) of further annotated frames
    that took no part in the choice. Choosing costs every model on every frame; an interval only
    needs the chosen one, and its split-conformal quantile (rank ceil((n+1)(1 - alpha/2)) of n)
    is less conservative with more frames: at 40 frames each tail sits at the 97.5th percentile.
    """
    joined = [*tuning.calibration, *pairs]
    predicted, truth = [p for p, _ in joined], [t for _, t in joined]
    table = fit_table(tuning.model, predicted, truth, level=level, min_per_bin=len(joined) + 1,
                      fitted_on=f"camera {tuning.camera}: {len(tuning.calibration)} out-of-block predictions "
                                f"and {len(pairs)} more annotated frames with the chosen setting")
    return replace(tuning, interval=table, cv_coverage=coverage(table, predicted, truth),
                   frames=sorted({*tuning.frames, *frames}), calibration=tuple(joined))


class TunedCounter:
    """A camera's counter with its commissioning applied: background, gain and the camera's own
    interval (the fine-tuned layers, if any, are in the engine ``inner`` was built with).

    What ``eval --tuning`` counts with, so a commissioned camera can be checked on annotated
    frames it never saw exactly as the site pipeline would count them.
    """

    def __init__(self, inner: Any, tuning: CameraTuning) -> None:
        self.inner = inner
        self.tuning = tuning

    @property
    def engine(self) -> object | None:
        return getattr(self.inner, "engine", None)

    def count(self, image_bgr: np.ndarray) -> Any:
        raw = self.inner.count(image_bgr)
        density = self.tuning.apply(raw.density)
        total = float(density.sum(dtype=np.float64))
        return replace(raw, density=density, interval=self.tuning.count_interval(total),
                       model=self.tuning.model)
