"""The fine-tuning loop: the layers after the cut, trained in torch on cached features.

Why and how: docs/design-notes.md, ``crowdsafe.training.loop``."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from crowdsafe.counting.weights import ConvSpec, conv_specs
from crowdsafe.training.features import CachedSample


@dataclass(frozen=True)
class TrainConfig:
    cut: str = "backend.2"
    steps: int = 5000
    batch: int = 4
    crop: int = 32
    lr: float = 2e-5
    warmup: int = 50
    eval_every: int = 500
    seed: int = 0
    bf16: bool = True
    threads: int | None = None
    #: Decay of an exponential moving average of the weights, validated beside the raw weights
    #: (0 = off; the better of the two is kept). In 600-step pilots without it, validation
    #: counts swung between -41 % and +46 % of the truth from one validation to the next.
    ema: float = 0.998
    #: The output conv's learning rate relative to the backend's. 0.1 was tried to damp the
    #: swings above; with it, validation counts recovered slowly from their early fall (still
    #: -19 % after 1500 steps, where a 1.0 pilot without the average was at -13 % after 600).
    output_lr_factor: float = 1.0
    #: Weight of an L1 term on each crop's count next to the pixel-wise squared error, meant to
    #: hold the total while the peaks move. Measured in a 100-step pilot (full backend, 0.1):
    #: validation counts still fell 27 % (29 % without), so the shipped recipe does not use it.
    count_weight: float = 0.0
    #: First conv after the cut that is trained; the ones before it run frozen in torch (so
    #: one feature cache serves several recipes). None: every conv after the cut is trained.
    train_from: str | None = None


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # step, val MAE, val bias
    ema_evals: list[tuple[int, float, float]] = field(default_factory=list)  # the same, averaged weights
    best_kind: str = "raw"
    best_step: int = 0
    best_mae: float = math.inf
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trained_specs(cut: str) -> list[ConvSpec]:
    """The convs after ``cut``: the ones fine-tuning changes (and the shipped file holds)."""
    convs = [layer for layer in conv_specs() if isinstance(layer, ConvSpec)]
    names = [c.name for c in convs]
    if cut not in names or cut == "output_layer":
        raise ValueError(f"--cut {cut!r}: expected one of {', '.join(names[:-1])}")
    return convs[names.index(cut) + 1:]


class Tail(nn.Module):
    """CSRNet after the cut, initialised from the published weights."""

    def __init__(self, cut: str, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.names = [spec.name for spec in trained_specs(cut)]
        layers: list[nn.Module] = []
        for spec in trained_specs(cut):
            w = weights[f"{spec.name}.weight"]
            conv = nn.Conv2d(w.shape[1], w.shape[0], spec.kernel, padding=spec.dilation * (spec.kernel // 2),
                             dilation=spec.dilation)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(weights[f"{spec.name}.bias"]))
            layers.append(conv)
            if spec.name != "output_layer":
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.frozen: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def freeze_before(self, name: str | None) -> None:
        """Hold the convs before ``name`` at their published weights (not exported either)."""
        if name is None:
            return
        if name not in self.names:
            raise ValueError(f"--train-from {name!r}: expected one of {', '.join(self.names)}")
        self.frozen = set(self.names[:self.names.index(name)])
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv_name, conv in zip(self.names, convs, strict=True):
            conv.requires_grad_(conv_name not in self.frozen)

    def state_arrays(self) -> dict[str, np.ndarray]:
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        out: dict[str, np.ndarray] = {}
        for name, conv in zip(self.names, convs, strict=True):
            if name in self.frozen:
                continue
            out[f"{name}.weight"] = conv.weight.detach().float().numpy().copy()
            out[f"{name}.bias"] = conv.bias.detach().float().numpy().copy()
        return out


def param_groups(tail: Tail, lr: float, output_factor: float = 1.0) -> list[dict[str, Any]]:
    """Optimiser groups: the backend at ``lr``, the output weights at ``lr * output_factor``,
    the output bias fixed (each step of it moves the count of every cell of every image, by
    12,288 x the step on a 1024x768 frame)."""
    convs = [m for m in tail.body if isinstance(m, nn.Conv2d)]
    output = convs[-1]
    output.bias.requires_grad_(False)
    body = [p for conv in convs[:-1] for p in conv.parameters() if p.requires_grad]
    return [{"params": body, "lr": lr}, {"params": [output.weight], "lr": lr * output_factor}]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load(sample: CachedSample) -> tuple[np.ndarray, np.ndarray]:
    return np.load(sample.features, mmap_mode="r"), np.load(sample.target)


def random_crops(samples: list[CachedSample], cfg: TrainConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of aligned feature/target crops, each from a random image and position."""
    feats, targets = [], []
    for index in rng.integers(0, len(samples), cfg.batch):
        f, t = _load(samples[int(index)])
        size_y, size_x = min(cfg.crop, t.shape[0]), min(cfg.crop, t.shape[1])
        y = int(rng.integers(0, t.shape[0] - size_y + 1))
        x = int(rng.integers(0, t.shape[1] - size_x + 1))
        fc = np.zeros((f.shape[0], cfg.crop, cfg.crop), np.float32)
        tc = np.zeros((cfg.crop, cfg.crop), np.float32)
        fc[:, :size_y, :size_x] = f[:, y:y + size_y, x:x + size_x]
        tc[:size_y, :size_x] = t[y:y + size_y, x:x + size_x]
        feats.append(fc)
        targets.append(tc)
    return torch.from_numpy(np.stack(feats)), torch.from_numpy(np.stack(targets))[:, None]


def whole_samples(samples: list[CachedSample], cfg: TrainConfig,
                  rng: np.random.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``cfg.batch`` random whole feature maps, one tensor pair each (their sizes differ)."""
    out = []
    for index in rng.integers(0, len(samples), cfg.batch):
        f, t = _load(samples[int(index)])
        out.append((torch.from_numpy(np.asarray(f, np.float32))[None],
                    torch.from_numpy(np.asarray(t, np.float32))[None, None]))
    return out


def batches(samples: list[CachedSample], cfg: TrainConfig,
            rng: np.random.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One step's inputs: a stacked batch of crops, or (``crop == 0``) whole images.

    Whole images are what the network sees at inference: a crop is zero-padded at its edges
    by every conv, and six dilated convs reach 12 cells in, so a 32-cell crop has only its
    middle 8x8 cells computed as in the full image. (Measured in 100-step pilots training
    the full backend, whole images did not avoid the early fall in validation counts that
    crops showed: 46 % low against 29 %.)
    """
    if cfg.crop == 0:
        return whole_samples(samples, cfg, rng)
    return [random_crops(samples, cfg, rng)]


@torch.no_grad()
def predict_counts(tail: nn.Module, samples: list[CachedSample], bf16: bool) -> list[float]:
    """Whole-image counts from cached features (the same numbers the full network gives)."""
    tail.eval()
    counts = []
    for sample in samples:
        f, _ = _load(sample)
        x = torch.from_numpy(np.asarray(f, np.float32))[None]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = tail(x)
        counts.append(float(y.float().sum()))
    tail.train()
    return counts


def train(train_samples: list[CachedSample], val_samples: list[CachedSample],
          weights: dict[str, np.ndarray], cfg: TrainConfig,
          on_step: Callable[[int, float], None] | None = None,
          on_eval: Callable[[int, float, float, str], None] | None = None,
          ) -> tuple[dict[str, np.ndarray], TrainLog]:
    """Fine-tune; return the best-on-validation layers (float32) and the log."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tail = Tail(cfg.cut, weights)
    tail.freeze_before(cfg.train_from)
    averaged = Tail(cfg.cut, weights) if cfg.ema > 0 else tail
    averaged.freeze_before(cfg.train_from)
    optimiser = torch.optim.Adam(param_groups(tail, cfg.lr, cfg.output_lr_factor), lr=cfg.lr)
    # Linear warm-up: Adam's first steps move every weight by about lr at once, which on a
    # pretrained network is a jolt; then cosine decay to zero.
    total = max(cfg.steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(
        (step + 1) / max(cfg.warmup, 1), 0.5 * (1 + math.cos(math.pi * min(step, total) / total))))
    val_truth = [float(np.load(s.target).sum()) for s in val_samples]
    log = TrainLog()
    best = averaged.state_arrays()
    start = time.perf_counter()

    def evaluate(step: int) -> None:
        nonlocal best
        if not val_samples:
            return
        # The raw weights too: the average lags the raw ones by about 1 / (1 - ema) steps,
        # which early on can be the worse of the two. The better one on validation is kept.
        candidates = [("average", averaged), ("raw", tail)] if averaged is not tail else [("raw", tail)]
        for kind, model in candidates:
            pred = predict_counts(model, val_samples, cfg.bf16)
            errors = [p - t for p, t in zip(pred, val_truth, strict=True)]
            mae = sum(abs(e) for e in errors) / len(errors)
            if kind == "raw":
                log.evals.append((step, mae, sum(errors) / len(errors)))
            else:
                log.ema_evals.append((step, mae, sum(errors) / len(errors)))
            if on_eval is not None:
                on_eval(step, mae, sum(errors) / len(errors), kind)
            if mae < log.best_mae:
                log.best_mae, log.best_step, best = mae, step, model.state_arrays()
                log.best_kind = kind

    evaluate(0)
    tail.train()
    for step in range(1, cfg.steps + 1):
        optimiser.zero_grad(set_to_none=True)
        value = 0.0
        for x, t in batches(train_samples, cfg, rng):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                y = tail(x)
            y32 = y.float()
            loss = (y32 - t).pow(2).sum(dim=(1, 2, 3))
            if cfg.count_weight > 0:
                loss = loss + cfg.count_weight * (y32.sum(dim=(1, 2, 3)) - t.sum(dim=(1, 2, 3))).abs()
            loss = loss.sum() / cfg.batch
            loss.backward()  # gradients add up over the batch's parts
            value += float(loss.detach())
        optimiser.step()
        schedule.step()
        if averaged is not tail:
            with torch.no_grad():
                for avg, cur in zip(averaged.parameters(), tail.parameters(), strict=True):
                    avg.lerp_(cur, 1.0 - cfg.ema)
        log.steps.append(step)
        log.losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluate(step)
    if not val_samples:
        best = averaged.state_arrays()
        log.best_step = cfg.steps
    log.seconds = time.perf_counter() - start
    return best, log
