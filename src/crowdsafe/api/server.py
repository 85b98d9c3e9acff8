"""Running the app under uvicorn: blocking (``crowdsafe serve``) or in a thread (next to the runner).

The server subclass ends live-feed streams before uvicorn's graceful shutdown waits for open
connections; otherwise one open dashboard would hold every shutdown until the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from crowdsafe.api.app import create_app
from crowdsafe.api.settings import ApiSettings
from crowdsafe.store import Store

GRACEFUL_SHUTDOWN_S = 3


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app: FastAPI = self.config.loaded_app  # type: ignore[attr-defined]
        hub = getattr(getattr(app, "state", None), "crowdsafe_events", None)
        if hub is None:  # loaded_app is uvicorn's wrapper: find the FastAPI app inside
            inner = getattr(app, "app", None)
            hub = getattr(getattr(inner, "state", None), "crowdsafe_events", None)
        if hub is not None:
            hub.close()
            await asyncio.sleep(0.05)  # let the streams send their last event
        await super().shutdown(sockets)


def _config(app: FastAPI, settings: ApiSettings, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                          access_log=access_log, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                          server_header=False, proxy_headers=False, lifespan="on")


def serve(settings: ApiSettings, *, access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM."""
    _Server(_config(create_app(settings), settings, access_log)).run()


@dataclass
class ServerHandle:
    """A server running in a daemon thread; ``stop()`` ends it (idempotent)."""

    server: uvicorn.Server
    thread: threading.Thread
    app: FastAPI
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def wait_ready(self, timeout_s: float = 0.0) -> None:
        """Nothing to wait for: ``serve_in_thread`` returns once it accepts (as ``WorkerPool``'s)."""


def lower_thread_priority(nice: int) -> int | None:
    """Make the calling thread ``nice`` steps nicer (at most 19); the threads it starts inherit it.

    Linux only, where a nice value belongs to a thread: the API beside a runner then gives way
    to the counting engine's threads when both want the cores (counting kept 81 % of its frames/s
    under 2,000-request bursts without it, 91 % with it: docs/results/running.md), yet has them to
    itself when counting idles. Returns the thread's new
    nice value, or None where nothing was changed.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None


def serve_in_thread(settings: ApiSettings, *, store: Store | None = None, access_log: bool = False,
                    start_timeout_s: float = 15.0) -> ServerHandle:
    """Start the API in this process (e.g. beside a runner) and return once it accepts
    connections. ``port=0`` picks a free port (see ``handle.port``). Signals stay with the caller:
    uvicorn installs no handlers outside the main thread, so the runner's SIGINT handling is kept.
    Raises RuntimeError if the server cannot start (port taken, bad site)."""
    app = create_app(settings, store=store)
    server = _Server(_config(app, settings, access_log))
    errors: list[BaseException] = []

    def run() -> None:
        lower_thread_priority(settings.api_nice)
        try:
            server.run()
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name="crowdsafe-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(2.0)
            raise RuntimeError(f"API did not start on {settings.host}:{settings.port}"
                               + (f": {errors[0]}" if errors else " (port in use?)"))
        time.sleep(0.02)
    port = settings.port
    with contextlib.suppress(IndexError, AttributeError):
        port = server.servers[0].sockets[0].getsockname()[1]
    return ServerHandle(server=server, thread=thread, app=app, host=settings.host, port=port)
