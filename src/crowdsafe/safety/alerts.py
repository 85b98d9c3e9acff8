"""Alert rules with hysteresis and minimum duration: raised -> acknowledged -> cleared.

A crowd reading is noisy; an alert that flaps every frame is ignored by operators within an
hour. So every rule has two thresholds (raise above ``raise_at``, clear only below
``clear_at``) and a minimum duration on both edges: the condition must hold for
``min_duration_s`` before the alert is raised and must be gone for as long before it clears.
Rules see plain numbers (a zone's density, a count over capacity, a line's flow, the age of a
camera's last frame), so the engine knows nothing about where the numbers came from.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["info", "warning", "critical"]
AlertState = Literal["raised", "acknowledged", "cleared"]


@dataclass(frozen=True)
class AlertRule:
    """Raise when ``metric`` of a subject stays >= raise_at; clear when it stays < clear_at.

    ``rate_window_s`` turns the rule into a surge rule: the value tested is the rate of change
    of the metric per minute over that window (e.g. +40 people/min into a zone).
    """

    name: str
    metric: str
    raise_at: float
    clear_at: float
    min_duration_s: float = 0.0
    severity: Severity = "warning"
    rate_window_s: float | None = None

    def __post_init__(self) -> None:
        if self.clear_at > self.raise_at:
            raise ValueError(f"rule {self.name}: clear_at ({self.clear_at}) must not exceed "
                             f"raise_at ({self.raise_at}); equal means no hysteresis")
        if self.min_duration_s < 0 or (self.rate_window_s is not None and self.rate_window_s <= 0):
            raise ValueError(f"rule {self.name}: durations must be positive")


@dataclass
class Alert:
    alert_id: str
    rule: str
    subject: str
    severity: Severity
    state: AlertState
    raised_ts: float
    value: float
    message: str
    acknowledged_ts: float | None = None
    acknowledged_by: str | None = None
    cleared_ts: float | None = None

    def as_row(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Track:
    """Per (rule, subject) state: pending edges and the open alert."""

    above_since: float | None = None
    below_since: float | None = None
    alert: Alert | None = None
    history: deque[tuple[float, float]] = field(default_factory=deque)


class AlertEngine:
    """Feeds readings through rules; returns the alerts whose state changed."""

    def __init__(self, rules: list[AlertRule]) -> None:
        self.rules = rules
        self._tracks: dict[tuple[str, str], _Track] = {}

    def update(self, subject: str, metric: str, ts: float, value: float) -> list[Alert]:
        changed: list[Alert] = []
        for rule in self.rules:
            if rule.metric != metric:
                continue
            track = self._tracks.setdefault((rule.name, subject), _Track())
            tested = self._tested_value(rule, track, ts, value)
            if tested is None:
                continue
            alert = self._step(rule, track, subject, ts, tested)
            if alert is not None:
                changed.append(alert)
        return changed

    @staticmethod
    def _tested_value(rule: AlertRule, track: _Track, ts: float, value: float) -> float | None:
        if rule.rate_window_s is None:
            return value
        track.history.append((ts, value))
        while track.history and track.history[0][0] < ts - rule.rate_window_s:
            track.history.popleft()
        t0, v0 = track.history[0]
        if ts - t0 < rule.rate_window_s / 2:  # not enough history for a meaningful slope
            return None
        return (value - v0) / (ts - t0) * 60.0

    def _step(self, rule: AlertRule, track: _Track, subject: str, ts: float,
              value: float) -> Alert | None:
        open_alert = track.alert if track.alert and track.alert.state != "cleared" else None
        if open_alert is None:
            if value >= rule.raise_at:
                track.above_since = ts if track.above_since is None else track.above_since
                if ts - track.above_since >= rule.min_duration_s:
                    track.alert = Alert(
                        alert_id=_alert_id(rule.name, subject, track.above_since), rule=rule.name,
                        subject=subject, severity=rule.severity, state="raised",
                        raised_ts=ts, value=value,
                        message=f"{rule.metric} of {subject} at {value:.2f} "
                                f"(raise at {rule.raise_at:g})")
                    track.below_since = None
                    return track.alert
            else:
                track.above_since = None
            return None
        open_alert.value = max(open_alert.value, value) if value >= rule.clear_at else open_alert.value
        if value < rule.clear_at:
            track.below_since = ts if track.below_since is None else track.below_since
            if ts - track.below_since >= rule.min_duration_s:
                open_alert.state = "cleared"
                open_alert.cleared_ts = ts
                track.above_since = None
                track.below_since = None
                return open_alert
        else:
            track.below_since = None
        return None

    def acknowledge(self, alert_id: str, by: str, ts: float) -> Alert | None:
        """Operators acknowledge a raised alert; it stays open until its condition clears."""
        for track in self._tracks.values():
            alert = track.alert
            if alert and alert.alert_id == alert_id and alert.state == "raised":
                alert.state = "acknowledged"
                alert.acknowledged_ts, alert.acknowledged_by = ts, by
                return alert
        return None

    def open_alerts(self) -> list[Alert]:
        return [t.alert for t in self._tracks.values() if t.alert and t.alert.state != "cleared"]


def _alert_id(rule: str, subject: str, since: float) -> str:
    """Deterministic: the same episode re-evaluated after a restart gets the same id (no duplicate)."""
    return hashlib.sha256(f"{rule}|{subject}|{since:.3f}".encode()).hexdigest()[:16]
