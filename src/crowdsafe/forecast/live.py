"""Forecasts from a store as readings arrive: one function for the API, the runner and the CLI.

Why and how: docs/design-notes.md, ``crowdsafe.forecast.live``."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from crowdsafe.config.site import Site
from crowdsafe.forecast.alerts import forecast_metrics
from crowdsafe.forecast.forecaster import Forecast, ZoneForecaster, resample_minutes
from crowdsafe.forecast.model import SiteForecastModel, cached_site_model
from crowdsafe.forecast.schedule import STEP_S
from crowdsafe.forecast.staffing import StaffingPlan, plan_staffing
from crowdsafe.store.store import Store

log = logging.getLogger(__name__)

#: Minutes of history read per zone: the features look back 45 min at most.
HISTORY_MIN = 120
#: A zone whose newest reading is older than this (minutes before ``now``) is not forecast.
STALE_MIN = 10


def default_method(site: Site | None = None) -> str:
    """What the live forecaster uses: never a model trained only on simulated days.

    ``profile`` (the schedule's arrival curve, transparent and untrained) where the site's
    schedule gives an expected attendance, else ``persistence`` (the last reading, intervals
    from the zone's own recent variability). ``gbm`` stays available on request
    (``--method gbm``), labelled ``trained_on: simulated`` until it learns from stored history.
    """
    if site is not None and any(getattr(e, "expected_attendance", None) for e in (site.schedule or [])):
        return "profile"
    return "persistence"


def zone_minutes(store: Store, zone_id: str, now: float,
                 history_min: int = HISTORY_MIN) -> tuple[np.ndarray, np.ndarray]:
    """(minute start times, mean count per minute) of one zone up to ``now``, gaps bridged."""
    start = (np.floor(now / STEP_S) - history_min) * STEP_S
    rows = store.history("zone_readings", zone_id, "count", start, now + 1e-3, STEP_S)
    return resample_minutes([b for b, *_ in rows], [mean for _, mean, *_ in rows])


def forecast_zones(store: Store, site: Site, now: float | None = None, *,
                   model: SiteForecastModel | None = None, method: str | None = None,
                   ) -> dict[str, Forecast]:
    """Forecast every zone of ``site`` with recent readings in ``store`` as of ``now``.

    ``model`` defaults to the process-wide cached fit for (site, method); pass one to avoid
    fitting here (the first fit of a site takes seconds).
    """
    now = time.time() if now is None else float(now)
    model = model or cached_site_model(site, method or default_method(site))
    out: dict[str, Forecast] = {}
    for zone in site.zones:
        if zone.id not in model.zones:
            continue
        grid, y = zone_minutes(store, zone.id, now)
        if y.size == 0 or now - grid[-1] > (STALE_MIN + 1) * STEP_S:
            continue
        out[zone.id] = ZoneForecaster(model, zone.id).forecast(grid, y)
    return out


def _lower_priority() -> None:
    """Nice this thread (Linux: per thread) so a fit never slows the counting it runs beside."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class ForecastUnavailable(RuntimeError):
    """No forecasts can be made for this site: the model could not be fitted (the message says why)."""


class ForecastNotReady(ForecastUnavailable):
    """The site's forecast model is still being fitted; ask again in a few seconds."""


@dataclass(frozen=True)
class LiveResult:
    """Forecasts as of ``now`` and the newest minute they start from."""

    now: float
    method: str
    forecasts: dict[str, Forecast]


#: How often the live forecaster refits when it learns from the store (new days to learn from).
REFIT_S = 6 * 3600.0


class LiveForecasts:
    """One site's forecasts from one store, fitted in the background, cached per new minute.

    Without a method named, and given the ``store``, it first tries to learn from the site's own
    stored days (``history.fit_history_model``: at least ``MIN_HISTORY_DAYS`` of them); with too
    little history it falls back to ``default_method`` and says so (``trained_on``). Either way it
    refits every ``refit_every_s`` in the background, serving the previous model meanwhile, so
    yesterday's readings teach today's forecasts without a restart.
    """

    def __init__(self, site: Site, method: str | None = None, *, seed: int = 1000,
                 fit: Callable[[Site, str, int], SiteForecastModel] | None = None,
                 store: Store | None = None, refit_every_s: float = REFIT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.site = site
        self.method = method or default_method(site)
        self._learn_history = method is None and store is not None
        self._store = store
        self._refit_every_s = refit_every_s
        self._seed = seed
        self._fit = fit
        self._model: SiteForecastModel | None = None
        self._fitted_at: float | None = None
        self._error: Exception | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cache: tuple[tuple[float, ...], LiveResult] | None = None
        self.fit_seconds: float | None = None
        self.fits = 0
        self._clock = clock  # the wall clock; a replay (or a test) passes its own

    def start(self) -> LiveForecasts:
        """Begin fitting (once, and again when a refit is due); returns at once."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            due = (self._model is not None and self._fitted_at is not None and self._refit_every_s > 0
                   and time.monotonic() - self._fitted_at >= self._refit_every_s)
            if not running and (self._thread is None or due):
                self._thread = threading.Thread(target=self._fit_now, name="forecast-fit", daemon=True)
                self._thread.start()
        return self

    def _fit_once(self) -> SiteForecastModel:
        from crowdsafe.forecast.series import with_series

        if self._learn_history and self._store is not None:
            from crowdsafe.forecast.history import fit_history_model

            model = fit_history_model(self._store, self.site, seed=self._seed)
            if model is not None:
                return with_series(model, self.site, self._store, self._clock())
        model = (self._fit or cached_site_model)(self.site, default_method(self.site) if self._learn_history
                                                 else self.method, self._seed)
        # Series are learned whenever the store is known (a method named on the command line
        # keeps its method, but still says where each event's crowd comes from).
        return with_series(model, self.site, self._store if self._learn_history else None, self._clock())

    def _fit_now(self) -> None:
        _lower_priority()
        t0 = time.perf_counter()
        try:
            model = self._fit_once()
        except Exception as exc:  # reported to every caller, not lost in a thread
            log.error("forecast model for site %s (%s) failed: %s", self.site.name, self.method, exc)
            if self._model is None:  # a failed refit keeps the model that works
                self._error = exc
            self._fitted_at = time.monotonic()
            return
        self.fit_seconds = time.perf_counter() - t0
        log.info("forecast model %s (trained on %s) for site %s fitted in %.1f s", model.method,
                 model.trained_on, self.site.name, self.fit_seconds)
        self.method = model.method
        self._model = model
        self._cache = None
        self.fits += 1
        self._fitted_at = time.monotonic()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the model is fitted (or failed); True when it is ready."""
        self.start()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._model is not None

    def status(self) -> dict[str, object]:
        """Whether forecasts can be asked for now, without asking (and starting the fit)."""
        self.start()
        return {"method": self.method, "ready": self._model is not None,
                "error": None if self._error is None else str(self._error),
                "fit_seconds": None if self.fit_seconds is None else round(self.fit_seconds, 2),
                "schedule_aware": None if self._model is None else self._model.schedule_aware,
                "trained_on": None if self._model is None else self._model.trained_on,
                "history_days": None if self._model is None else self._model.history_days,
                "horizons_min": None if self._model is None else list(self._model.horizons),
                "events": [] if self._model is None else [e.as_dict() for e in self._model.event_sources],
                "staffing_policy": self.site.staffing is not None}

    def model(self) -> SiteForecastModel:
        """The fitted model; ForecastNotReady while fitting, the fit's own error if it failed."""
        self.start()
        if self._error is not None:
            raise ForecastUnavailable(f"the {self.method} forecast model could not be fitted: "
                                      f"{self._error}") from self._error
        if self._model is None:
            raise ForecastNotReady(f"the {self.method} forecast model for this site is being fitted; "
                                   "retry in a few seconds")
        return self._model

    def forecasts(self, store: Store, now: float | None = None) -> LiveResult:
        """Forecasts as of ``now`` (default: the clock); recomputed when a zone has a new minute."""
        model = self.model()
        now = time.time() if now is None else float(now)
        newest = store.latest("zone_readings")
        stamp = (np.floor(now / STEP_S), *sorted(np.floor(float(r["ts"]) / STEP_S) for r in newest
                                               if r["ts"] <= now))
        cached = self._cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        result = LiveResult(now, self.method, forecast_zones(store, self.site, now, model=model))
        self._cache = (stamp, result)
        return result

    def staffing(self, store: Store, now: float | None = None, slot_minutes: int = 15,
                 bound: str | None = None) -> StaffingPlan:
        """The site policy's plan from the current forecasts (ValueError without a policy)."""
        if self.site.staffing is None:
            raise ValueError("the site file has no 'staffing' policy")
        return plan_staffing(self.site, self.forecasts(store, now).forecasts, slot_minutes, bound)


AlertUpdate = Callable[[str, str, float, float], object]


class ForecastStep:
    """The runner's periodic forecast: call ``maybe_run(now)`` from its loop; cheap when not due.

    Every ``every_s`` it forecasts all zones from the store, feeds ``forecast_metrics`` to
    ``alert`` (the runner's ``AlertSink.update(subject, metric, ts, value)``: the
    ``capacity_forecast`` rule) and hands the forecasts to ``on_forecast``. While the model is
    still fitting (in its own thread) it does nothing; a failed fit is logged once and the step
    stays off: forecasting must never stop the counting.
    """

    def __init__(self, store: Store, site: Site, *, every_s: float = 60.0, method: str | None = None,
                 alert: AlertUpdate | None = None,
                 on_forecast: Callable[[Mapping[str, Forecast], float], None] | None = None,
                 live: LiveForecasts | None = None) -> None:
        self.store = store
        self.site = site
        self.live = (live or LiveForecasts(site, method, store=store)).start()
        self.every_s = every_s
        self.alert = alert
        self.on_forecast = on_forecast
        self._next = 0.0
        self._failed = False
        self.runs = 0
        self.latest: dict[str, Forecast] = {}

    def maybe_run(self, now: float | None = None) -> dict[str, Forecast] | None:
        """Forecast if due and the model is ready; the forecasts, or None when nothing ran."""
        now = time.time() if now is None else now
        if self._failed or now < self._next:
            return None
        try:
            result = self.live.forecasts(self.store, now)
        except ForecastNotReady:
            return None
        except Exception as exc:  # a forecast problem must never stop the counting
            log.error("forecast step off: %s", exc)
            self._failed = True
            return None
        self._next = now + self.every_s
        self.runs += 1
        self.latest = result.forecasts
        if self.alert is not None:
            for subject, metric, value in forecast_metrics(self.site, result.forecasts):
                self.alert(subject, metric, now, value)
        if self.on_forecast is not None and result.forecasts:
            self.on_forecast(result.forecasts, now)
        return result.forecasts
