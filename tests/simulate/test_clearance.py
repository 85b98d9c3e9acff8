"""Clearance: the flow formula, the 8-minute egress alert, the CLI, and JuPedSim when installed."""

from __future__ import annotations

import json
import math
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import Exit
from crowdsafe.safety.alerts import AlertEngine
from crowdsafe.safety.guidance import EGRESS_TARGET_S as EGRESS_THRESHOLD_S
from crowdsafe.safety.rules import CLEARANCE_METRIC, egress_alert_rules
from crowdsafe.simulate import jupedsim_model
from crowdsafe.simulate.clearance import ExitSpec, clearance_time, egress_capacity
from crowdsafe.simulate.jupedsim_model import (
    cached_clearance,
    jupedsim_available,
    place_doors,
    simulate_clearance,
)

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


def test_flow_formula():
    # 984 people, 2 m level + 1 m stairs: 2*82 + 66 = 230 p/min -> 984 / 230 min.
    exits = [Exit(name="a", width_m=2.0), Exit(name="b", width_m=1.0, kind="stairs")]
    assert clearance_time(984, exits) == pytest.approx(60 * 984 / 230)
    assert clearance_time(0, exits) == 0.0
    assert math.isinf(clearance_time(10, []))
    assert clearance_time(100, [{"width_m": 1.0}], specific_flow={"level": 100}) == pytest.approx(60.0)
    assert clearance_time(82, [ExitSpec(1.0)], travel_time_s=15) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        clearance_time(-1, exits)
    with pytest.raises(ValueError, match="kind"):
        clearance_time(1, [{"width_m": 1.0, "kind": "ramp"}])


def test_egress_capacity_is_the_alert_point():
    exits = [ExitSpec(1.8)]  # the demo forecourt's door: 147.6 p/min
    n = egress_capacity(exits)
    assert n == pytest.approx(147.6 * 8)
    assert clearance_time(n, exits) == pytest.approx(EGRESS_THRESHOLD_S)


def test_egress_alert_rules_raise_and_clear():
    rules = egress_alert_rules()
    severities = {r.name: r.severity for r in rules}
    assert severities == {"egress_time_warning": "warning", "egress_time": "critical"}
    engine = AlertEngine(rules)
    exits = [ExitSpec(1.8)]
    events, peak = [], 0.0
    for t, people in enumerate([500, 900, 1250, 1250, 1250, 1250, 700, 700, 700, 700]):
        for alert in engine.update("forecourt", CLEARANCE_METRIC, t * 15.0, clearance_time(people, exits)):
            events.append((alert.rule, alert.state, t))  # alerts are updated in place: note the state now
            peak = max(peak, alert.value) if alert.rule == "egress_time" else peak
    assert ("egress_time", "raised", 4) in events  # 1250 p -> 508 s, held for the 30 s minimum
    assert ("egress_time", "cleared", 8) in events
    assert ("egress_time_warning", "raised", 3) in events  # 900 p -> 366 s >= 360 s, held 30 s
    assert peak > EGRESS_THRESHOLD_S
    with pytest.raises(ValueError):
        egress_alert_rules(warn_fraction=1.5)


def test_simulate_cli(tmp_path):
    out = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["simulate", str(DEMO), "--zone", "forecourt", "--people", "1200",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["flow_clearance_s"] == pytest.approx(60 * 1200 / 147.6, abs=0.1)
    assert "over the 480 s limit" in res.output
    res = CliRunner().invoke(app, ["simulate", str(DEMO), "--zone", "lawn", "--people", "10"])
    assert res.exit_code == 2 and "no exits" in res.output


def test_doors_are_placed_on_the_longest_edges():
    from shapely.geometry import Polygon

    doors = place_doors(Polygon([(0, 0), (20, 0), (20, 10), (0, 10)]), [ExitSpec(2.0), ExitSpec(1.0)])
    assert [round(d.length, 6) for d in doors] == [2.0, 1.0]
    assert {round(d.centroid.y, 6) for d in doors} == {0.0, 10.0}


def test_simulate_cli_uses_the_site_flows_and_limit(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["safety"] = {"specific_flow_pmm": {"level": 60}, "egress_limit_s": 600}
    data["cameras"][0]["source"] = str(DEMO.parent / "vtest.avi")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["simulate", str(site_file), "--zone", "forecourt", "--people", "1200",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["exit_flow_pm"] == pytest.approx(108.0) and data["threshold_s"] == 600
    assert data["flow_clearance_s"] == pytest.approx(60 * 1200 / 108, abs=0.1)
    assert data["people_at_threshold"] == 1080 and "over the 600 s limit" in res.output
    res = CliRunner().invoke(app, ["simulate", str(site_file), "--zone", "forecourt", "--people", "1000",
                                   "--level-flow", "82", "--threshold", "480", "--json", str(out)])
    assert json.loads(out.read_text())["exit_flow_pm"] == pytest.approx(147.6)


@pytest.mark.skipif(not jupedsim_available(), reason="jupedsim not installed (optional extra [simulate])")
def test_jupedsim_clearance_is_slower_than_the_flow_bound_and_cached(tmp_path):
    room = [(0, 0), (12, 0), (12, 8), (0, 8)]
    exits = [ExitSpec(1.5)]
    cache = tmp_path / "clearance.json"
    assert cached_clearance(room, exits, 40, seed=3, cache_file=cache) is None
    t0 = time.perf_counter()
    t = simulate_clearance(room, exits, 40, seed=3, cache_file=cache)
    first_s = time.perf_counter() - t0
    bound = clearance_time(40, exits)
    assert bound < t < 6 * bound + 30  # walking to the door adds time; a stuck crowd would not finish
    assert simulate_clearance(room, exits, 40, seed=3) == t  # cached in memory
    jupedsim_model._CACHE.clear()
    assert cached_clearance(room, exits, 40, seed=3, cache_file=cache) == t  # and on disk
    t0 = time.perf_counter()
    assert simulate_clearance(room, exits, 40, seed=3, cache_file=cache) == t
    assert time.perf_counter() - t0 < first_s  # no simulation the second time
    # Another seed is another crowd: close, but its own run.
    other = simulate_clearance(room, exits, 40, seed=4, cache_file=cache)
    assert other != t and abs(other - t) < 0.5 * t
    assert len(json.loads(cache.read_text())) == 2
    with pytest.raises(ValueError, match="cannot place"):
        simulate_clearance([(0, 0), (6, 0), (6, 4), (0, 4)], exits, 200, seed=1)  # 8 p/m²


@pytest.mark.skipif(not jupedsim_available(), reason="jupedsim not installed (optional extra [simulate])")
def test_simulate_cli_with_jupedsim_caches_across_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDSAFE_CACHE", str(tmp_path / "cache"))
    args = ["simulate", str(DEMO), "--zone", "forecourt", "--people", "60", "--jupedsim", "--json",
            str(tmp_path / "j.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    first = json.loads((tmp_path / "j.json").read_text())
    assert first["jupedsim_cached"] is False
    assert first["jupedsim_clearance_s"] > first["flow_clearance_s"] > 0
    assert (tmp_path / "cache" / "clearance.json").is_file()
    jupedsim_model._CACHE.clear()  # a new process would start with an empty memory cache
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "cached" in res.output
    second = json.loads((tmp_path / "j.json").read_text())
    assert second["jupedsim_cached"] is True
    assert second["jupedsim_clearance_s"] == first["jupedsim_clearance_s"]
