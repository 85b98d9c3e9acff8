"""``create_app(settings)``: the FastAPI app with every router, middleware and the live-feed poller."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

import crowdsafe.api.metrics as metrics
import crowdsafe.api.pages as pages
from crowdsafe.api.context import ApiState, load_state
from crowdsafe.api.events import Admission, EventHub
from crowdsafe.api.events import router as events_router
from crowdsafe.api.middleware import BodyLimit, SecurityHeaders
from crowdsafe.api.routes import alerts, cameras, forecast, lines, report, setup, site, zones
from crowdsafe.api.settings import ApiSettings
from crowdsafe.api.tokens import TokenError
from crowdsafe.store import Store, StoreError, open_store

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 1.0  # how old /health's store check may be

DESCRIPTION = """Crowd counts, densities, Level of Service, line flows and alerts of one site.
crowdsafe measures crowds, never persons: nothing here identifies or follows anyone.

Every endpoint except `/health` needs `Authorization: Bearer <token>` (`crowdsafe token create`).
Roles: viewer (read), operator (+ acknowledge alerts), admin (+ site reload, the Setup page)."""


def create_app(settings: ApiSettings, store: Store | None = None,
               admission: Admission | None = None) -> FastAPI:
    """The app for a site; opens the store unless one is given (the caller then keeps closing it).
    ``admission``: who counts the live streams against their caps (default: this app alone)."""
    own_store = store is None
    opened = store if store is not None else open_store(settings.store_target)
    state = load_state(settings, opened)
    registry = CollectorRegistry()
    hub = EventHub(lambda: app.state.crowdsafe, admission)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Bounded: a burst of requests queues here instead of taking the cores counting needs.
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, settings.api_threads)
        task = asyncio.create_task(hub.run(), name="crowdsafe-live-feed")
        try:
            yield
        finally:
            hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if own_store:
                opened.close()

    app = FastAPI(title="crowdsafe", version=_version(), description=DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.crowdsafe = state
    app.state.crowdsafe_events = hub
    app.state.crowdsafe_registry = registry
    registry.register(metrics.StoreCollector(lambda: app.state.crowdsafe, lambda: hub))

    _routes(app)
    _errors(app)
    # Outermost last: the body limit acts before anything reads a body; CORS only when asked for.
    app.add_middleware(metrics.RequestMetrics, registry=registry)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       larger={"/api/setup/venue-plan/image": setup.VENUE_PLAN_MAX_BYTES})
    return app


def _version() -> str:
    try:
        return importlib.metadata.version("crowdsafe")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _routes(app: FastAPI) -> None:
    from fastapi import Depends

    from crowdsafe.api.auth import viewer

    checked: list[tuple[float, bool]] = []  # (when, store readable): one store read a second at most

    def store_readable(state: ApiState) -> bool:
        try:
            state.store.latest("camera_health")
            return True
        except (StoreError, SQLAlchemyError):
            return False

    @app.get("/health", tags=["health"], summary="Liveness (no token needed)")
    async def health(request: Request) -> dict[str, Any]:
        """Says only that the API runs and can read the store: nothing about the crowd. The store
        is read at most once every ``HEALTH_EVERY_S`` per API process, so a probe storm (or a
        flood from anyone, as no token is needed) costs the store nothing more."""
        now = time.monotonic()
        if not checked or now - checked[-1][0] >= HEALTH_EVERY_S:
            checked[:] = [(now, await anyio.to_thread.run_sync(store_readable, request.app.state.crowdsafe))]
        store_ok = checked[-1][1]
        return {"status": "ok" if store_ok else "degraded", "store": store_ok}

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(viewer)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    for module in (site, zones, lines, cameras, alerts, forecast, report, setup):
        app.include_router(module.router)
    app.include_router(events_router)
    app.include_router(metrics.router)
    app.include_router(pages.router)


def _errors(app: FastAPI) -> None:
    """Store trouble is the server's, but temporary: 503 with a reason, never a traceback."""

    @app.exception_handler(StoreError)
    @app.exception_handler(SQLAlchemyError)
    async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("store error: %s", exc)
        return JSONResponse({"detail": "store unavailable, try again"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(TokenError)
    async def tokens_unreadable(_request: Request, exc: Exception) -> JSONResponse:
        log.error("%s", exc)
        return JSONResponse({"detail": "token file unreadable; see server log"}, status_code=503)
