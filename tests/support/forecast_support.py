"""A demo site with an event around a chosen time and a staffing policy, and its simulated readings."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import yaml

from crowdsafe.config.site import Site, load_site
from crowdsafe.forecast import fit_site_model, simulate_day
from crowdsafe.forecast.model import SiteForecastModel
from crowdsafe.store import Store

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
POLICY = {"people_per_steward": 250, "people_per_steward_by_type": {"queue": 100, "standing": 200},
          "min_stewards": 1, "extra_by_los": {"D": 1, "E": 2, "F": 4}, "people_per_medic": 1000,
          "min_medics": 1}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(round(ts / 60) * 60, UTC).isoformat()


def event_site(tmp_path: Path, doors_ts: float, *, staffing: bool = True, lawn_capacity: int | None = None,
               attendance: int | None = None, name: str = "site.yaml") -> Path:
    """The demo site with doors at ``doors_ts``, start 45 min later, a break, end 2 h 45 min later."""
    data = yaml.safe_load(DEMO.read_text())
    data["schedule"] = [{"name": "test concert", "doors_open": iso(doors_ts), "start": iso(doors_ts + 2700),
                         "end": iso(doors_ts + 9900),
                         "breaks": [[iso(doors_ts + 6300), iso(doors_ts + 7500)]]}]
    if attendance is not None:
        data["schedule"][0]["expected_attendance"] = attendance
    if staffing:
        data["staffing"] = POLICY
    if lawn_capacity is not None:
        next(z for z in data["zones"] if z["id"] == "lawn")["capacity"] = lawn_capacity
    data["cameras"][0]["source"] = str(DEMO.parent / "vtest.avi")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def fill_until(store: Store, site: Site, until_ts: float, seed: int = 5) -> dict[str, list[dict]]:
    """Write one simulated day's one-minute readings up to ``until_ts``; the rows by zone."""
    day = simulate_day(site, seed=seed)
    rows = [r for r in day.readings() if r["ts"] <= until_ts]
    store.write("zone_readings", rows)
    by_zone: dict[str, list[dict]] = {}
    for r in rows:
        by_zone.setdefault(str(r["zone_id"]), []).append(r)
    return by_zone


def quick_fit(site: Site, method: str = "profile", seed: int = 77) -> SiteForecastModel:
    """A real but small fit (profile: numpy only, a few simulated days) for tests."""
    return fit_site_model(site, method, train_days=1, calib_days=3, seed=seed)


def load(path: Path) -> Site:
    return load_site(path)
