"""Staffing: the policy's arithmetic by hand, a plan from real forecasts, and the CLI on a store."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.config.site import Staffing, load_site, parse_site
from crowdsafe.forecast import Forecast, fit_site_model, forecast_site, plan_staffing, simulate_day
from crowdsafe.forecast.schedule import site_events
from crowdsafe.forecast.simulate_day import demo_schedule
from crowdsafe.forecast.staffing import site_medics, zone_stewards
from crowdsafe.store import open_store

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
POLICY = {"people_per_steward": 250, "people_per_steward_by_type": {"queue": 100, "standing": 200},
          "min_stewards": 1, "extra_by_los": {"D": 1, "E": 2, "F": 4}, "people_per_medic": 1000,
          "min_medics": 1}


def square(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


@pytest.fixture
def site():
    pts = square(0, 0, 1, 1)
    return parse_site({
        "name": "hand", "cameras": [{"id": "c", "source": "x.mp4",
                                     "calibration": {"image_points": pts, "ground_points": pts}}],
        "zones": [{"id": "floor", "type": "standing", "capacity": 800, "polygon": square(0, 0, 20, 20)},
                  {"id": "hall", "type": "walkway", "polygon": square(20, 0, 10, 10)},
                  {"id": "gate", "type": "queue", "polygon": square(30, 0, 10, 5)}],
        "staffing": POLICY})


def fc(zone: str, hi80: list[float], last: float = 0.0) -> Forecast:
    horizons = (5, 10, 15, 20, 25, 30)
    return Forecast(zone, 0.0, horizons, tuple(hi80), tuple(hi80), tuple(hi80), tuple(hi80), tuple(hi80),
                    "test", last)


@pytest.mark.parametrize(("zone_id", "people", "expected"), [
    ("floor", 450, (3, 1, 0, 3)),   # 1.125 p/m² = queue LoS C; ceil(450/200) = 3
    ("floor", 700, (4, 1, 1, 5)),   # 1.75 p/m² = LoS D: one extra
    ("hall", 10, (1, 1, 0, 1)),     # walkway falls back to the default 250; minimum 1
    ("hall", 0.5, (0, 0, 0, 0)),    # under open_at_people: closed, no stewards
    ("gate", 260, (3, 1, 4, 7)),    # 5.2 p/m² = queue LoS F: four extra; ceil(260/100) = 3
])
def test_zone_stewards_by_hand(site, zone_id, people, expected):
    zone = next(z for z in site.zones if z.id == zone_id)
    plan = plan_staffing(site, [fc(zone_id, [people] * 6)])
    got = plan.zones[0]
    assert (got.by_ratio, got.minimum, got.extra_los, got.stewards) == expected
    assert zone_stewards(site.staffing, zone, people, got.los) == expected


def test_medics_and_slots(site):
    plan = plan_staffing(site, [fc("floor", [450, 450, 450, 700, 700, 800], last=300),
                                fc("hall", [10] * 6), fc("gate", [260, 200, 100, 0, 0, 0])], slot_minutes=15)
    assert len(plan.site) == 2
    first, second = plan.site
    assert first.people == pytest.approx(450 + 10 + 260) and first.medics == 1  # max(ceil(0.72), 1)
    assert second.people == pytest.approx(800 + 10 + 0) and second.medics == 1
    floor = [z for z in plan.zones if z.zone_id == "floor"]
    assert [z.people for z in floor] == [450, 800]  # the slot maximum of hi80
    assert floor[1].stewards == 4 + 1  # 2.0 p/m² is LoS D
    assert site_medics(Staffing(people_per_medic=1000, min_medics=1), 2100) == 3
    assert site_medics(Staffing(people_per_medic=1000, min_medics=1), 0) == 0
    assert plan.as_dict()["slot_minutes"] == 15 and len(plan.rows()) == 3 * 2 + 2


def test_last_count_counts_in_first_slot_and_bound_choice(site):
    plan = plan_staffing(site, [fc("floor", [100] * 6, last=900)])
    assert plan.zones[0].people == 900
    f = Forecast("floor", 0.0, (5,), (100.0,), (90.0,), (300.0,), (80.0,), (500.0,), "t", 0.0)
    assert plan_staffing(site, [f], bound="mean").zones[0].people == 100
    assert plan_staffing(site, [f], bound="hi95").zones[0].people == 500
    assert plan_staffing(site, [f]).bound == "hi80" and plan_staffing(site, [f]).zones[0].people == 300


def test_no_policy_is_a_clear_error(site):
    bare = site.model_copy(update={"staffing": None})
    with pytest.raises(ValueError, match="no 'staffing' policy"):
        plan_staffing(bare, [fc("floor", [1] * 6)])


def demo_with_policy(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    event = demo_schedule()[0]
    data["schedule"] = [{"name": event.name, "doors_open": event.doors_open.isoformat(),
                         "start": event.start.isoformat(), "end": event.end.isoformat(),
                         "breaks": [[a.isoformat(), b.isoformat()] for a, b in event.breaks]}]
    data["staffing"] = POLICY
    data["cameras"][0]["source"] = str(DEMO.parent / "vtest.avi")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_from_forecasts(tmp_path):
    site = load_site(demo_with_policy(tmp_path))
    day = simulate_day(site, seed=5)
    event = site_events(day.site)[0]
    model = fit_site_model(site, "profile", train_days=1, calib_days=3, seed=77)
    rows = [r for r in day.readings() if r["ts"] <= event.doors_ts + 600]
    forecasts = forecast_site(model, rows)
    plan = plan_staffing(site, forecasts, slot_minutes=15)
    assert len(plan.site) == 4 and {z.zone_id for z in plan.zones} == {"walkway", "lawn", "forecourt"}
    zones = {z.id: z for z in site.zones}
    for slot in plan.zones:
        f = forecasts[slot.zone_id]
        in_slot = [v for t, v in zip(f.target_ts(), f.hi80, strict=True)
                   if slot.slot_start_ts < t <= slot.slot_end_ts]
        if slot.slot_start_ts == plan.issued_ts:
            in_slot.append(f.last_count)
        assert slot.people == pytest.approx(max(in_slot), abs=0.06)
        assert slot.stewards == zone_stewards(site.staffing, zones[slot.zone_id], slot.people, slot.los)[3]
    lawn = [z.stewards for z in plan.zones if z.zone_id == "lawn"]
    assert lawn[-1] > lawn[0]  # the crowd is coming in: more stewards in later slots


def test_staffing_cli_writes_csv(tmp_path):
    site_path = demo_with_policy(tmp_path)
    site = load_site(site_path)
    day = simulate_day(site, seed=9)
    event = site_events(day.site)[0]
    store = open_store(tmp_path / "s.sqlite")
    store.write("zone_readings", [r for r in day.readings() if r["ts"] <= event.start_ts])
    store.close()
    out = tmp_path / "plan.csv"
    res = CliRunner().invoke(app, ["forecast", "staffing", str(site_path), "--store",
                                   str(tmp_path / "s.sqlite"), "--method", "profile", "--csv", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert {r["zone_id"] for r in rows} == {"walkway", "lawn", "forecourt", "*site*"}
    assert len(rows) == 4 * 4
    assert all(int(r["stewards"]) >= 0 for r in rows)
    assert all(int(r["medics"]) >= 1 for r in rows if r["zone_id"] == "*site*")
    assert "stewards" in res.output


def test_staffing_cli_without_policy_fails_cleanly(tmp_path):
    bare = tmp_path / "site.yaml"
    data = yaml.safe_load(DEMO.read_text())
    data.pop("staffing")
    data["cameras"][0]["source"] = str(DEMO.parent / data["cameras"][0]["source"])
    bare.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["forecast", "staffing", str(bare), "--store", str(tmp_path / "x.sqlite")])
    assert res.exit_code == 2 and "staffing" in res.output
