"""The forecaster learns from the site's own stored days: day splitting, the held-out check
against persistence, and the live forecaster switching to history and refitting."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from crowdsafe.cli.forecast import demo_site_path
from crowdsafe.cli.main import app
from crowdsafe.config.site import Site, load_site
from crowdsafe.forecast import simulate_day
from crowdsafe.forecast.crowdmodel import _gamma_cdf
from crowdsafe.forecast.history import StoredDay, fit_history_model, held_out_mae, stored_days
from crowdsafe.forecast.live import LiveForecasts
from crowdsafe.forecast.model import fit_site_model
from crowdsafe.forecast.simulate_day import SimulatedDay, shift_schedule, with_schedule
from crowdsafe.store import open_store
from crowdsafe.store.store import Store

N_STORED = 6


def history_site(n_days: int) -> Site:
    """The demo site with its evening event on each of ``n_days`` consecutive days."""
    site = with_schedule(load_site(demo_site_path()))
    events = [e for k in range(n_days) for e in shift_schedule(site.schedule, k)]
    return site.model_copy(update={"schedule": events})


def recorded_days(n_days: int) -> list[SimulatedDay]:
    # Simulated days stand in for recorded ones: the test needs stored readings of many days.
    base = with_schedule(load_site(demo_site_path()))
    return [simulate_day(base, seed=7, day_index=k) for k in range(n_days)]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Site, Store, list[SimulatedDay]]:
    days = recorded_days(N_STORED + 1)
    store = open_store(tmp_path_factory.mktemp("history") / "s.sqlite")
    for day in days[:N_STORED]:
        store.write("zone_readings", list(day.readings()))
    yield history_site(N_STORED + 1), store, days
    store.close()


def test_stored_days_are_runs_of_minutes_every_zone_has(tmp_path):
    site = load_site(demo_site_path())
    store = open_store(tmp_path / "s.sqlite")
    t0 = 1_780_000_000.0 // 60 * 60
    rows = []
    for zone in site.zones:
        for m in range(300):
            gap_short = 50 <= m < 55  # bridged, as live
            gap_long = 150 <= m < 170  # longer than 10 min: the day splits
            if not (gap_short or gap_long):
                rows.append({"zone_id": zone.id, "ts": t0 + 60.0 * m + 7.0, "count": float(m % 13)})
    # the forecourt's readings stop 30 minutes earlier: the day ends where every zone has readings
    rows = [r for r in rows if not (r["zone_id"] == "forecourt" and r["ts"] >= t0 + 60.0 * 270)]
    store.write("zone_readings", rows)
    days = stored_days(store, site, min_minutes=60)
    assert [d.minutes for d in days] == [150, 100]
    first = days[0]
    assert first.ts[0] == t0 and np.all(np.diff(first.ts) == 60.0)
    assert first.observed["walkway"][52] == first.observed["walkway"][49] == 49 % 13  # carried over the gap
    assert days[1].ts[0] == t0 + 60.0 * 170 and days[1].ts[-1] == t0 + 60.0 * 269
    assert [d.minutes for d in stored_days(store, site, min_minutes=120)] == [150]
    assert [d.minutes for d in stored_days(store, site, before=t0 + 60.0 * 100, min_minutes=60)] == [100]
    store.close()


def test_gamma_cdf_far_in_the_tail_is_one_not_nan():
    x = np.array([0.0, 1.0, 50.0, 1e4, 1e7])
    out = _gamma_cdf(x, shape=3.0, theta=2.0)
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[-1] == 1.0 and out[-2] == 1.0
    assert np.all(np.diff(out) >= 0)


def test_model_trained_on_stored_days_beats_persistence_on_a_new_day(history):
    site, store, days = history
    model = fit_history_model(store, site)
    assert model is not None
    assert (model.trained_on, model.method, model.history_days) == ("history", "gbm", N_STORED)
    assert model.history_minutes == sum(d.ts.size for d in days[:N_STORED])
    new_day = days[N_STORED]  # never stored: the forecast of tomorrow
    test = [StoredDay(new_day.ts, new_day.observed, [])]
    learned = held_out_mae(model, test)
    persistence = held_out_mae(fit_site_model(site, "persistence"), test)
    assert learned < 0.8 * persistence


def test_too_little_history_falls_back_and_says_so(tmp_path):
    site = history_site(3)
    store = open_store(tmp_path / "s.sqlite")
    for day in recorded_days(2):
        store.write("zone_readings", list(day.readings()))
    assert len(stored_days(store, site)) == 2
    assert fit_history_model(store, site) is None
    live = LiveForecasts(site, store=store)
    assert live.wait(120)
    status = live.status()
    assert status["trained_on"] != "history" and status["history_days"] == 0
    assert status["method"] == "profile"  # the schedule's arrival curve: it gives an attendance
    store.close()


def test_live_forecaster_learns_from_the_store_and_refits(history):
    site, store, _ = history
    live = LiveForecasts(site, store=store, refit_every_s=0.05)
    assert live.wait(300)
    status = live.status()
    assert (status["trained_on"], status["history_days"], status["method"]) == ("history", N_STORED, "gbm")
    time.sleep(0.1)
    live.start()  # due: refits in the background, serving the fitted model meanwhile
    live.model()
    assert live.wait(300)
    assert live.fits == 2
    # A method asked for by name is used as asked, history or not.
    assert LiveForecasts(site, "persistence", store=store).method == "persistence"


def test_store_backtest_walks_forward_through_the_stored_days(history, tmp_path):
    """``forecast backtest --store DB --methods history``: each day forecast by a model of the days
    before it only; 6 stored days leave 3 to test (3 needed before the first)."""
    site, _, days = history
    db = tmp_path / "copy.sqlite"
    copy = open_store(db)
    for day in days[:N_STORED]:
        copy.write("zone_readings", list(day.readings()))
    copy.close()
    site_file = tmp_path / "site.yaml"
    data = yaml.safe_load(demo_site_path().read_text())
    data["cameras"][0]["source"] = str(demo_site_path().parent / data["cameras"][0]["source"])
    data["schedule"] = [e.model_dump(mode="json", exclude_none=True) for e in site.schedule]
    site_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["forecast", "backtest", "--store", str(db), "--site", str(site_file),
                                   "--methods", "history,persistence", "--every", "15", "--json", str(out)])
    assert res.exit_code == 0, res.output
    hist = json.loads(out.read_text())["methods"]["history"]
    assert {v["days_tested"] for v in hist.values()} == {N_STORED - 3}
    assert all(v["days_learned"] >= 1 for v in hist.values())
    assert hist["h30"]["rel_mae_persistence"] < 1.0 and hist["h60"]["rel_mae_persistence"] < 1.0
