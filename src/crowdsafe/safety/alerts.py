"""Alert rules with hysteresis, hold times and a cool-down: raised -> acknowledged -> cleared.

Why and how: docs/design-notes.md, ``crowdsafe.safety.alerts``."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["info", "warning", "critical"]
AlertState = Literal["raised", "acknowledged", "cleared"]


@dataclass(frozen=True)
class AlertRule:
    """Raise when ``metric`` of a subject stays >= raise_at; clear when it stays < clear_at.

    ``rate_window_s`` turns the rule into a surge rule: the value tested is the rate of change
    of the metric per minute over that window (e.g. +40 people/min into a zone).
    ``min_duration_s`` is the hold before raising, ``clear_hold_s`` the hold before clearing
    (None: the same), ``cooldown_s`` how long after clearing a return reopens the same alert.
    ``smooth_s`` tests the mean over that many seconds instead of each reading: a per-frame count
    of a sparse scene jumps by half its value from one frame to the next, and a hold time alone
    would then never see a busy minute as busy.
    """

    name: str
    metric: str
    raise_at: float
    clear_at: float
    min_duration_s: float = 0.0
    severity: Severity = "warning"
    rate_window_s: float | None = None
    clear_hold_s: float | None = None
    cooldown_s: float = 0.0
    smooth_s: float | None = None

    def __post_init__(self) -> None:
        if self.clear_at > self.raise_at:
            raise ValueError(f"rule {self.name}: clear_at ({self.clear_at}) must not exceed "
                             f"raise_at ({self.raise_at}); equal means no hysteresis")
        if (self.min_duration_s < 0 or (self.rate_window_s is not None and self.rate_window_s <= 0)
                or (self.clear_hold_s is not None and self.clear_hold_s < 0) or self.cooldown_s < 0
                or (self.smooth_s is not None and self.smooth_s <= 0)):
            raise ValueError(f"rule {self.name}: durations must be positive")

    @property
    def clear_hold(self) -> float:
        return self.min_duration_s if self.clear_hold_s is None else self.clear_hold_s


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
    occurrences: int = 1  # raises folded into this alert by the cool-down
    last_raised_ts: float | None = None  # the latest (re)raise; raised_ts stays the first

    def as_row(self) -> dict[str, object]:
        return dict(self.__dict__)


#: (rule, subject id, tested value, seconds the condition has held, the subject's latest metrics)
Describe = Callable[[AlertRule, str, float, float, Mapping[str, float]], str]


def plain_message(rule: AlertRule, subject: str, value: float, held_s: float,
                  latest: Mapping[str, float]) -> str:
    """The fallback text when no site-aware describer is given."""
    return f"{subject}: {rule.metric} {value:.3g} for {held_s:.0f} s (limit {rule.raise_at:g})"


@dataclass
class _Track:
    """Per (rule, subject) state: pending edges and the open (or recently cleared) alert."""

    above_since: float | None = None
    below_since: float | None = None
    alert: Alert | None = None
    refreshed_ts: float | None = None  # when the open alert's message was last brought up to date
    history: deque[tuple[float, float]] = field(default_factory=deque)
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # for ``smooth_s``


#: An open alert's message is brought up to date at most this often (it says how long and how much).
MESSAGE_REFRESH_S = 15.0


class AlertEngine:
    """Feeds readings through rules; returns the alerts whose state changed.

    An open alert's message is kept current ("... for 14 min" while it lasts, not the wording of its
    first seconds): ``take_refreshed`` hands over the open alerts whose message changed, to be
    saved without being announced again (no webhook, no new live event).
    """

    def __init__(self, rules: list[AlertRule], describe: Describe | None = None) -> None:
        self.rules = rules
        self.describe = describe or plain_message
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._latest: dict[str, dict[str, float]] = {}  # subject -> metric -> value, for messages
        self._refreshed: dict[str, Alert] = {}

    def update(self, subject: str, metric: str, ts: float, value: float) -> list[Alert]:
        changed: list[Alert] = []
        self._latest.setdefault(subject, {})[metric] = value
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
        if rule.smooth_s is not None:
            track.recent.append((ts, value))
            while track.recent[0][0] < ts - rule.smooth_s:
                track.recent.popleft()
            value = sum(v for _, v in track.recent) / len(track.recent)
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
            if value < rule.raise_at:
                track.above_since = None
                return None
            track.above_since = ts if track.above_since is None else track.above_since
            held = ts - track.above_since
            if held < rule.min_duration_s:
                return None
            track.below_since = None
            message = self.describe(rule, subject, value, held, self._latest.get(subject, {}))
            last = track.alert
            if last is not None and last.cleared_ts is not None and ts - last.cleared_ts <= rule.cooldown_s:
                last.state, last.cleared_ts, last.last_raised_ts = "raised", None, ts
                last.occurrences += 1
                last.value, last.message = value, message
                return last  # the same episode come back: one alert, one more occurrence
            track.refreshed_ts = ts
            track.alert = Alert(
                alert_id=_alert_id(rule.name, subject, track.above_since), rule=rule.name,
                subject=subject, severity=rule.severity, state="raised", raised_ts=ts, value=value,
                message=message, last_raised_ts=ts)
            return track.alert
        open_alert.value = max(open_alert.value, value) if value >= rule.clear_at else open_alert.value
        if value >= rule.clear_at and track.above_since is not None and (
                track.refreshed_ts is None or ts - track.refreshed_ts >= MESSAGE_REFRESH_S):
            held = ts - track.above_since
            message = self.describe(rule, subject, value, held, self._latest.get(subject, {}))
            track.refreshed_ts = ts
            if message != open_alert.message:
                open_alert.message = message
                self._refreshed[open_alert.alert_id] = open_alert
        if value < rule.clear_at:
            track.below_since = ts if track.below_since is None else track.below_since
            if ts - track.below_since >= rule.clear_hold:
                open_alert.state = "cleared"
                open_alert.cleared_ts = ts
                track.above_since = None
                track.below_since = None
                return open_alert
        else:
            track.below_since = None
        return None

    def take_refreshed(self) -> list[Alert]:
        """Open alerts whose message changed since the last call (state unchanged)."""
        out = [a for a in self._refreshed.values() if a.state != "cleared"]
        self._refreshed.clear()
        return out

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
