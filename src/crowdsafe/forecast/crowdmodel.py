"""A compartment model of an event day: who is queueing, walking or watching, minute by minute.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.crowdmodel``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class EventTimes:
    """An event's times in minutes on the model's grid (minute 0 = grid start)."""

    doors: float
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class CrowdParams:
    """Behaviour of one event's crowd; defaults are plausible, not measured at any venue."""

    attendance: float
    arrival_mean_min: float = 35.0  # mean arrival time before the start
    arrival_shape: float = 3.0  # gamma shape of the lead time: larger is more punctual
    late_min: float = 8.0  # how far the arrival distribution reaches past the start
    gate_rate_pm: float | None = None  # admissions per minute; None: attendance / 20
    transit_min: float = 3.0  # mean time to walk through the walkways
    break_share: float = 0.35  # share of the audience leaving their place in a break
    egress_min: float = 8.0  # time constant of leaving after the end
    early_leave_pm: float = 0.003  # share of the audience leaving per minute in the last 30 min
    start_delay_min: float = 0.0  # the real start (and everything after) vs the schedule

    @property
    def gate_rate(self) -> float:
        return self.gate_rate_pm if self.gate_rate_pm is not None else max(self.attendance / 20.0, 5.0)

    def randomized(self, rng: np.random.Generator) -> CrowdParams:
        """This crowd with day-to-day variation: same schedule, different people and weather."""
        return replace(
            self,
            attendance=self.attendance * rng.lognormal(0.0, 0.2),
            arrival_mean_min=self.arrival_mean_min * rng.lognormal(0.0, 0.25),
            arrival_shape=rng.uniform(2.0, 4.5),
            gate_rate_pm=self.gate_rate * rng.lognormal(0.0, 0.25),
            transit_min=rng.uniform(2.0, 4.0),
            break_share=rng.uniform(0.2, 0.5),
            egress_min=self.egress_min * rng.lognormal(0.0, 0.3),
            start_delay_min=rng.uniform(0.0, 6.0),
        )


def _arrivals(n_minutes: int, times: EventTimes, p: CrowdParams,
              rng: np.random.Generator | None) -> np.ndarray:
    """People arriving in each minute: expected values, or a Poisson process when rng is given."""
    mean_x = p.arrival_mean_min + p.late_min
    theta = mean_x / p.arrival_shape
    edges = np.arange(n_minutes + 1, dtype=float)
    start = times.start + p.start_delay_min * 0.3  # people follow the schedule, not the real start
    if rng is None:
        # X = start + late - t; arrivals in [t, t+1) have X in (start+late-t-1, start+late-t].
        x_edges = start + p.late_min - edges
        cdf = _gamma_cdf(np.clip(x_edges, 0.0, None), p.arrival_shape, theta)
        return p.attendance * (cdf[:-1] - cdf[1:])
    n = rng.poisson(p.attendance)
    t_arr = start + p.late_min - rng.gamma(p.arrival_shape, theta, size=n)
    hist, _ = np.histogram(t_arr, bins=edges)
    # Everyone comes: those earlier than the grid wait from minute 0, none later than its end.
    hist[0] += int(np.sum(t_arr < 0))
    return hist.astype(float)


def _gamma_cdf(x: np.ndarray, shape: float, theta: float) -> np.ndarray:
    """Regularized lower incomplete gamma by series; numpy only, accurate to ~1e-10 here."""
    z = np.asarray(x, dtype=float) / theta
    out = np.zeros_like(z)
    # Far in the upper tail the CDF is 1 to double precision, while the series' terms would
    # overflow before they shrink (an event days after the grid's start gave NaN profiles).
    tail = z > shape + 10.0 * math.sqrt(shape) + 40.0
    out[tail] = 1.0
    pos = (z > 0) & ~tail
    zp = z[pos]
    term = np.full_like(zp, 1.0 / shape)
    total = term.copy()
    for k in range(1, 400):
        term = term * zp / (shape + k)
        total += term
        if np.all(term < 1e-12 * total):
            break
    log_pref = shape * np.log(zp) - zp - math.lgamma(shape)
    out[pos] = np.clip(np.exp(log_pref) * total, 0.0, 1.0)
    return out


def event_occupancy(n_minutes: int, times: EventTimes, params: CrowdParams,
                    rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """People in queue, walkway and standing zones each minute for one event (no ambient crowd)."""
    stochastic = rng is not None

    def move(n: float, tau: float) -> float:
        prob = 1.0 - math.exp(-1.0 / tau) if tau > 0 else 1.0
        if n <= 0:
            return 0.0
        return float(rng.binomial(round(n), prob)) if stochastic else n * prob  # type: ignore[union-attr]

    def share(n: float, prob: float) -> float:
        if n <= 0:
            return 0.0
        return float(rng.binomial(round(n), min(prob, 1.0))) if stochastic else n * prob  # type: ignore[union-attr]

    arrivals = _arrivals(n_minutes, times, params, rng)
    delay = params.start_delay_min
    doors = times.doors
    _start, end = times.start + delay, times.end + delay
    breaks = [(b0 + delay, b1 + delay) for b0, b1 in times.breaks]
    gate = params.gate_rate
    tau_w = params.transit_min
    queue = w_in = audience = leavers = w_mid = bar = w_back = w_out = 0.0
    out = {k: np.zeros(n_minutes) for k in ("queue", "walkway", "standing")}
    for t in range(n_minutes):
        queue += arrivals[t]
        if t >= doors:
            admitted = min(queue, float(rng.poisson(gate)) if stochastic else gate)  # type: ignore[union-attr]
            queue -= admitted
            w_in += admitted
        x = move(w_in, tau_w)
        w_in -= x
        audience += x
        in_break = next(((b0, b1) for b0, b1 in breaks if b0 <= t < b1), None)
        if any(math.floor(b0) == t for b0, _ in breaks):
            x = share(audience, params.break_share)
            audience -= x
            leavers += x
        x = move(leavers, 2.0)
        leavers -= x
        w_mid += x
        x = move(w_mid, 1.5)
        w_mid -= x
        bar += x
        if t >= end:
            back_tau = math.inf
        elif in_break is None or t >= in_break[1] - 6:
            back_tau = 2.5
        else:
            back_tau = 20.0
        x = move(bar, back_tau) if math.isfinite(back_tau) else 0.0
        bar -= x
        w_back += x
        x = move(w_back, 1.5)
        w_back -= x
        audience += x
        if end - 30 <= t < end:
            x = share(audience, params.early_leave_pm)
            audience -= x
            w_out += x
        if t >= end:
            for name in ("audience", "leavers", "bar"):
                n = {"audience": audience, "leavers": leavers, "bar": bar}[name]
                x = move(n, params.egress_min)
                if name == "audience":
                    audience -= x
                elif name == "leavers":
                    leavers -= x
                else:
                    bar -= x
                w_out += x
        x = move(w_out, tau_w)
        w_out -= x
        out["queue"][t] = queue + bar
        out["walkway"][t] = w_in + w_mid + w_back + w_out
        out["standing"][t] = audience + leavers
    return out
