"""Zone metrics for the alert rules: evacuation clearance from the site's exits and limits."""

from __future__ import annotations

import time

import pytest

from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.metrics import zone_metrics
from crowdsafe.measure.zones import ZoneReading
from crowdsafe.runtime.plan import compile_plan
from crowdsafe.safety.alerts import AlertEngine
from crowdsafe.safety.rules import CLEARANCE_METRIC, default_rules
from tests.support.forecast_support import event_site, load

DOORS = 1_779_999_960.0  # the event site's doors time (as in tests/forecast/test_forecast_live.py)


def test_zone_metrics_carry_clearance_and_default_rules_follow_the_site_limit(tmp_path):
    site = load(event_site(tmp_path, DOORS))
    geometry = build_site_geometry(site)
    book = geometry.site.safety.profile_book()
    readings = [ZoneReading(z, time.time(), 984.0, 100.0, 100.0, 1.0, None, None, 100.0)
                for z in ("walkway", "lawn", "forecourt")]
    metrics = {(m.subject, m.metric): m.value for m in zone_metrics(geometry, readings, book)}
    assert metrics[("walkway", CLEARANCE_METRIC)] == pytest.approx(60 * 984 / (9 * 82))  # 6 m + 3 m level
    assert metrics[("forecourt", CLEARANCE_METRIC)] == pytest.approx(60 * 984 / (1.8 * 82))
    assert ("lawn", CLEARANCE_METRIC) not in metrics  # no exits: no clearance, no egress alert
    # The site's own specific flow and egress limit reach the metric and the rules.
    custom = site.model_copy(update={"safety": site.safety.model_copy(
        update={"specific_flow_pmm": {"level": 60.0, "stairs": 50.0}, "egress_limit_s": 300.0})})
    geometry = build_site_geometry(custom)
    metrics = {(m.subject, m.metric): m.value for m in zone_metrics(geometry, readings, book)}
    assert metrics[("forecourt", CLEARANCE_METRIC)] == pytest.approx(60 * 984 / (1.8 * 60))
    rules = {r.name: r for r in compile_plan(geometry, {}).rules}  # what a run of the site alerts on
    assert rules["egress_time"].raise_at == 300.0 and rules["egress_time_warning"].raise_at == 225.0
    assert default_rules()[1].raise_at == 480.0 and "capacity_forecast" in rules
    # Fed as the runner feeds it: 984 people behind a 1.8 m door is 400 s, over a 300 s limit.
    engine = AlertEngine(default_rules(custom.safety.egress_limit_s))
    changed = []
    for t in range(0, 60, 10):
        for m in zone_metrics(geometry, [readings[2]], book):
            changed += [a for a in engine.update(m.subject, m.metric, float(t), m.value)
                        if a.rule == "egress_time"]
    assert changed and changed[0].state == "raised" and changed[0].severity == "critical"
