"""Every forecast says what its model learned from and how much of the zone's history it used."""

from __future__ import annotations

import numpy as np

from crowdsafe.cli.forecast import demo_site_path
from crowdsafe.config.site import load_site
from crowdsafe.forecast import ZoneForecaster, fit_site_model


def test_forecast_reports_training_source_and_history() -> None:
    site = load_site(demo_site_path())
    model = fit_site_model(site, "naive", train_days=1, calib_days=1)
    assert model.trained_on == "simulated"  # no stored history given: the simulator's days
    zone = site.zones[0].id
    ts = 1_700_000_000.0 + 60.0 * np.arange(37)
    fc = ZoneForecaster(model, zone).forecast(ts, np.full(ts.size, 5.0)).as_dict()
    assert fc["trained_on"] == "simulated"
    assert fc["history_min"] == 37
    assert fc["method"] == "naive"  # the existing fields keep their names


def test_demo_forecasts_stay_near_the_last_hour() -> None:
    """The demo site (no schedule): the live default forecasts no crowd the last hour does not show.

    Readings of the lawn case in the issue (4-6 people for an hour): every 15-60 min mean stays
    within [0.5 x min, 2 x max] of the last hour, and the bounds come from the zone's own changes.
    """
    from crowdsafe.forecast.live import default_method

    site = load_site(demo_site_path())
    method = default_method(site)
    assert method == "persistence"
    model = fit_site_model(site, method)
    assert model.trained_on == "none"
    rng = np.random.default_rng(3)
    ts = 1_700_000_000.0 + 60.0 * np.arange(60)
    for zone in site.zones:
        counts = rng.integers(4, 7, ts.size).astype(float)
        fc = ZoneForecaster(model, zone.id).forecast(ts, counts)
        for h, mean, lo, hi in zip(fc.horizons, fc.mean, fc.lo80, fc.hi80, strict=True):
            if 15 <= h <= 60:
                assert 0.5 * counts.min() <= mean <= 2 * counts.max()
                assert lo <= mean <= hi
                assert hi < 4 * counts.max()  # no invented crowd in the bound either
