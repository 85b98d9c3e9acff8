"""Prometheus metrics, read from the store at scrape time, labelled only by configured ids.

A collector (not gauges updated by the pipeline) because the API may run in another process
than the runner: the store is the one place both see. Label values come from the site file,
never from stored rows or request paths, so a store holding junk ids or a client requesting
random URLs cannot blow up the series count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import ApiState
from crowdsafe.api.settings import RuntimeStats

if TYPE_CHECKING:
    from crowdsafe.api.events import EventHub

router = APIRouter(tags=["metrics"])
LOS_INDEX = {letter: i for i, letter in enumerate("ABCDEF")}
RISK_INDEX = {"normal": 0, "slowed": 1, "critical": 2, "dangerous": 3}


class StoreCollector(Collector):
    def __init__(self, state_of: Callable[[], ApiState], hub_of: Callable[[], EventHub]) -> None:
        self._state_of = state_of
        self._hub_of = hub_of

    def collect(self) -> Iterator[Metric]:
        state = self._state_of()
        view = state.site_view
        now = time.time()
        runtime = state.settings.runtime_stats() if state.settings.runtime_stats is not None else None
        yield from self._zones(state, now)
        yield from self._lines(state, now)
        yield from self._cameras(state, now, runtime.camera_fps if runtime is not None else {})
        open_alerts = GaugeMetricFamily("crowdsafe_alerts_open", "Alerts raised or acknowledged, not cleared",
                                        labels=["severity", "state"])
        counts: dict[tuple[str, str], int] = {}
        for state_name in ("raised", "acknowledged"):
            for a in state.store.alerts(state_name):
                sev = a["severity"] if a["severity"] in ("info", "warning", "critical") else "other"
                counts[(sev, state_name)] = counts.get((sev, state_name), 0) + 1
        for (sev, state_name), n in sorted(counts.items()):
            open_alerts.add_metric([sev, state_name], n)
        yield open_alerts
        hub = self._hub_of()
        yield GaugeMetricFamily("crowdsafe_sse_clients", "Connected live-feed clients",
                                value=len(hub.subscribers))
        yield GaugeMetricFamily("crowdsafe_sse_queue_depth", "Deepest live-feed client queue",
                                value=hub.queue_depth())
        yield GaugeMetricFamily("crowdsafe_sse_clients_dropped", "Live-feed clients cut off for lagging",
                                value=hub.clients_dropped)
        if runtime is not None:
            yield from self._runtime(runtime, view.camera_ids)

    @staticmethod
    def _zones(state: ApiState, now: float) -> Iterator[Metric]:
        view = state.site_view
        fams = {name: GaugeMetricFamily(f"crowdsafe_zone_{name}", doc, labels=["zone"]) for name, doc in (
            ("count", "People in the zone (latest reading)"),
            ("density", "People per m² of the zone's seen area"),
            ("capacity", "Configured capacity"),
            ("los", "Level of Service, A=0 ... F=5"),
            ("risk", "Risk band, normal=0 slowed=1 critical=2 dangerous=3"),
            ("coverage_percent", "Share of the zone seen by a camera"),
            ("reading_age_seconds", "Age of the latest reading"))}
        for info in view.payload["zones"]:
            if info["capacity"] is not None:
                fams["capacity"].add_metric([info["id"]], info["capacity"])
        for r in state.store.latest("zone_readings"):
            zid = r["zone_id"]
            if zid not in view.zone_ids:
                continue
            fams["count"].add_metric([zid], r["count"])
            fams["reading_age_seconds"].add_metric([zid], max(0.0, now - r["ts"]))
            if r.get("density") is not None:
                fams["density"].add_metric([zid], r["density"])
            if r.get("los") in LOS_INDEX:
                fams["los"].add_metric([zid], LOS_INDEX[r["los"]])
            if r.get("risk") in RISK_INDEX:
                fams["risk"].add_metric([zid], RISK_INDEX[r["risk"]])
            if r.get("coverage_pct") is not None:
                fams["coverage_percent"].add_metric([zid], r["coverage_pct"])
        yield from fams.values()

    @staticmethod
    def _lines(state: ApiState, now: float) -> Iterator[Metric]:
        view = state.site_view
        flow = GaugeMetricFamily("crowdsafe_line_flow_pmm", "Flow across the line, people/metre/minute",
                                 labels=["line"])
        crossing = GaugeMetricFamily("crowdsafe_line_crossings", "People crossing in the latest period",
                                     labels=["line", "direction"])
        age = GaugeMetricFamily("crowdsafe_line_reading_age_seconds", "Age of the latest reading",
                                labels=["line"])
        for r in state.store.latest("line_readings"):
            lid = r["line_id"]
            if lid not in view.line_ids:
                continue
            if r.get("flow_pmm") is not None:
                flow.add_metric([lid], r["flow_pmm"])
            crossing.add_metric([lid, "in"], r["in_count"])
            crossing.add_metric([lid, "out"], r["out_count"])
            age.add_metric([lid], max(0.0, now - r["ts"]))
        yield from (flow, crossing, age)

    @staticmethod
    def _cameras(state: ApiState, now: float, live_fps: Mapping[str, float]) -> Iterator[Metric]:
        """From the latest health rows; fps from the runner itself when it runs in this process."""
        view = state.site_view
        up = GaugeMetricFamily("crowdsafe_camera_up", "1 when the camera's latest status is up",
                               labels=["camera"])
        fps = GaugeMetricFamily("crowdsafe_camera_fps", "Frames per second read from the camera",
                                labels=["camera"])
        errors = GaugeMetricFamily("crowdsafe_camera_errors", "Read errors reported by the camera",
                                   labels=["camera"])
        age = GaugeMetricFamily("crowdsafe_camera_frame_age_seconds", "Seconds since the last frame",
                                labels=["camera"])
        for r in state.store.latest("camera_health"):
            cid = r["camera_id"]
            if cid not in view.camera_ids:
                continue
            up.add_metric([cid], 1.0 if r["status"] in ("up", "ok") else 0.0)
            if cid in live_fps:
                fps.add_metric([cid], live_fps[cid])
            elif r.get("fps") is not None:
                fps.add_metric([cid], r["fps"])
            errors.add_metric([cid], r.get("errors") or 0)
            if r.get("last_frame_ts") is not None:
                age.add_metric([cid], max(0.0, now - r["last_frame_ts"]))
        yield from (up, fps, errors, age)

    @staticmethod
    def _runtime(stats: RuntimeStats, camera_ids: frozenset[str]) -> Iterator[Metric]:
        families = [
            (GaugeMetricFamily("crowdsafe_pipeline_latency_seconds",
                               "Sample time to readings handed to the store, latest frame",
                               labels=["camera"]),
             stats.pipeline_latency_s),
            (GaugeMetricFamily("crowdsafe_pipeline_processing_seconds",
                               "Time in the stage chain (count, zones, lines, background), latest frame",
                               labels=["camera"]), stats.processing_s),
            (GaugeMetricFamily("crowdsafe_samples_dropped", "Samples replaced before being processed",
                               labels=["camera"]), stats.dropped),
            (CounterMetricFamily("crowdsafe_frames_processed", "Frames counted since the runner started",
                                 labels=["camera"]), stats.frames),
        ]
        for family, values in families:
            for cid, value in values.items():
                if cid in camera_ids:
                    family.add_metric([cid], value)
            yield family
        if stats.queue_depth is not None:
            yield GaugeMetricFamily("crowdsafe_pipeline_queue_depth", "Samples waiting for inference",
                                    value=stats.queue_depth)


class RequestMetrics:
    """Request count and latency per route template (bounded: unmatched paths are 'other')."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("crowdsafe_http_requests", "HTTP requests", ["route", "status"],
                                registry=registry)
        self.latency = Histogram("crowdsafe_http_request_seconds", "HTTP request time to response start",
                                 ["route"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _route_template(scope)
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.latency.labels(route).observe(time.perf_counter() - start)
                self.requests.labels(route, f"{message['status'] // 100}xx").inc()
            await send(message)

        await self.app(scope, receive, timed_send)


def _route_template(scope: Scope) -> str:
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "other")
    return "other"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, _: Annotated[Principal, Depends(viewer)]) -> Response:
    """Needs a viewer token like everything else: give Prometheus one with ``authorization:
    {type: Bearer, credentials_file: ...}`` in its scrape config."""
    return Response(generate_latest(request.app.state.crowdsafe_registry), media_type=CONTENT_TYPE_LATEST)
