"""Alert rules: hysteresis, minimum duration, surge rate, acknowledge, stable ids."""

from __future__ import annotations

import pytest

from crowdsafe.safety.alerts import AlertEngine, AlertRule

DENSITY = AlertRule("density-critical", "density", raise_at=4.0, clear_at=3.0, min_duration_s=20,
                    severity="critical")


def feed(engine: AlertEngine, series: list[tuple[float, float]], metric: str = "density"):
    events = []
    for ts, value in series:
        events += [(ts, a.state) for a in engine.update("gate-A", metric, ts, value)]
    return events


def test_short_spike_does_not_raise():
    engine = AlertEngine([DENSITY])
    assert feed(engine, [(0, 1.0), (5, 4.5), (10, 4.6), (15, 2.0), (20, 4.2), (35, 2.0)]) == []


def test_raise_after_min_duration_and_hysteresis_keeps_it_open():
    engine = AlertEngine([DENSITY])
    series = [(0, 4.1), (10, 4.3), (20, 4.2),          # raised at 20 s (held 20 s)
              (30, 3.5), (40, 3.9), (50, 3.2),         # below raise but above clear: stays open
              (60, 2.5), (70, 2.8), (75, 3.4),         # dips below clear, but not for 20 s
              (80, 2.0), (90, 2.1), (100, 1.0)]        # clears at 100 (below clear since 80)
    assert feed(engine, series) == [(20, "raised"), (100, "cleared")]
    assert engine.open_alerts() == []


def test_acknowledge_keeps_alert_open_until_clear():
    engine = AlertEngine([DENSITY])
    (alert,) = [a for ts in (0, 10, 20) for a in engine.update("gate-A", "density", ts, 5.0)]
    assert engine.acknowledge(alert.alert_id, "steward-lead", 25).state == "acknowledged"
    assert engine.acknowledge(alert.alert_id, "someone-else", 26) is None
    assert engine.open_alerts()[0].acknowledged_by == "steward-lead"
    assert feed(engine, [(30, 1.0), (50, 1.0)]) == [(50, "cleared")]


def test_surge_rule_uses_rate_per_minute():
    surge = AlertRule("surge", "count", raise_at=30.0, clear_at=10.0, rate_window_s=60)
    engine = AlertEngine([surge])
    steady = [(t, 100.0) for t in range(0, 120, 10)]
    rising = [(120 + t, 100.0 + t) for t in range(10, 130, 10)]  # +60 people per minute
    events = feed(engine, steady + rising, metric="count")
    assert events[0][1] == "raised"
    assert 120 < events[0][0] <= 160
    flat = [(250 + t, 220.0) for t in range(0, 130, 10)]
    assert feed(engine, flat, metric="count")[-1][1] == "cleared"


def test_same_episode_gets_same_id_after_restart():
    ids = []
    for _ in range(2):
        engine = AlertEngine([DENSITY])
        ids += [a.alert_id for ts in (100, 110, 120) for a in engine.update("gate-A", "density", ts, 5.0)]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_rules_on_other_metrics_and_subjects_are_independent():
    cap = AlertRule("capacity", "occupancy_pct", raise_at=90, clear_at=80)
    engine = AlertEngine([DENSITY, cap])
    assert [a.rule for a in engine.update("hall", "occupancy_pct", 0, 95)] == ["capacity"]
    assert engine.update("gate-A", "occupancy_pct", 0, 50) == []
    assert len(engine.open_alerts()) == 1


def test_inverted_thresholds_are_refused():
    with pytest.raises(ValueError, match="must not exceed"):
        AlertRule("bad", "density", raise_at=2.0, clear_at=3.0)
