"""Sampling intervals as people type them (``1s``, ``500ms``, ``2``, ``1m``) and the frame plan.

Counting every frame of a CCTV video is rarely useful (crowds change over seconds, not 40 ms)
and is slow on a CPU, so users pick a time interval; this module decides which frames that
interval selects, so the video reader only has to follow the plan.
"""

from __future__ import annotations

import math
import re

_UNITS: dict[str, float] = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "msec": 0.001,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


class IntervalError(ValueError):
    """The interval text is not a positive duration; the message shows accepted forms."""


def parse_interval(text: str) -> float:
    """Seconds from ``"1s"``, ``"500ms"``, ``"2"`` (seconds), ``"0.5s"``, ``"1m"`` or ``"1h"``."""
    match = _PATTERN.match(text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise IntervalError(f"cannot read interval {text!r}; use e.g. 1s, 500ms, 2 (seconds), "
                            "0.5s, 1m")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise IntervalError(f"interval {text!r} must be longer than zero")
    return seconds


class FramePlan:
    """Which frames to count when sampling every ``every`` seconds (None: every frame).

    Works on timestamps, not frame numbers, so variable-frame-rate video (phones) is
    sampled at the intended times. Targets are k * every, computed afresh each time rather
    than accumulated, so rounding does not drift over hours of footage.
    """

    #: Timestamps this close below a target count as on it (container times are rounded).
    TOLERANCE = 1e-6

    def __init__(self, every: float | None) -> None:
        self.every = every

    def is_due(self, timestamp: float | None, target: float) -> bool:
        return self.every is None or timestamp is None or timestamp >= target - self.TOLERANCE

    def next_target(self, timestamp: float | None) -> float:
        """The first target time strictly after ``timestamp`` (the frame just counted)."""
        if self.every is None or timestamp is None:
            return 0.0
        return (math.floor(timestamp / self.every + self.TOLERANCE) + 1) * self.every

    def expected(self, frame_count: int, fps: float | None) -> int | None:
        """How many frames the plan should count, for progress bars; None when unknown."""
        if frame_count <= 0:
            return None
        if self.every is None:
            return frame_count
        if fps is None:
            return None
        last = (frame_count - 1) / fps
        return min(math.floor(last / self.every + self.TOLERANCE) + 1, frame_count)
