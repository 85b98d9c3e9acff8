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
