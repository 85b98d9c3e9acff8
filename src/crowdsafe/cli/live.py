"""The runner and its API: what ``crowdsafe run`` and ``crowdsafe demo`` share.

The API reads everything durable from the store; what only the runner knows (pipeline latency,
queue depth, live camera fps, the newest rows, background capture) it gets from providers built
here. By default (``--api-workers 1`` or more) the API runs in processes of its own that reach
those providers over ``api.channel`` (``api.workers``); with ``--api-workers 0`` it runs in a
daemon thread of this process, as before. Either way SIGINT/SIGTERM stay with the runner's clean
shutdown, and the API is stopped after the runner has flushed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from crowdsafe.api.settings import TOKENS_FILE, ApiSettings, RuntimeStats
from crowdsafe.api.tokens import TokenBook, TokenError
from crowdsafe.cli.errors import err_console, fail
from crowdsafe.config.site import Site
from crowdsafe.runtime.core import SiteRunner
from crowdsafe.store import Store

if TYPE_CHECKING:
    from crowdsafe.api.server import ServerHandle
    from crowdsafe.api.workers import WorkerPool

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def runtime_stats(runner_of: Callable[[], SiteRunner | None]) -> Callable[[], RuntimeStats]:
    """A provider for ``ApiSettings.runtime_stats``; empty until the runner exists (engine start-up)."""

    def provide() -> RuntimeStats:
        runner = runner_of()
        if runner is None:
            return RuntimeStats()
        live = runner.live_stats()
        return RuntimeStats(pipeline_latency_s=live.latency_s, queue_depth=live.queue_depth,
                            dropped=live.dropped, camera_fps=live.camera_fps, processing_s=live.processing_s,
                            frames=live.frames)

    return provide


def port_problem(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, found before uvicorn tries (its errors are log lines)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def background_capture(runner_of: Callable[[], SiteRunner | None]) -> Callable[[str], tuple[bool, str]]:
    """A provider for ``ApiSettings.capture_background``: the running pipeline's own capture."""
    def capture(camera_id: str) -> tuple[bool, str]:
        runner = runner_of()
        if runner is None:
            return False, "the runner has not started yet"
        return runner.pipeline.capture_background(camera_id)
    return capture


def background_undo(runner_of: Callable[[], SiteRunner | None]) -> Callable[[str], tuple[bool, str]]:
    """A provider for ``ApiSettings.undo_background``: the running pipeline's own undo."""
    def undo(camera_id: str) -> tuple[bool, str]:
        runner = runner_of()
        if runner is None:
            return False, "the runner has not started yet"
        return runner.pipeline.undo_capture(camera_id)
    return undo


def start_api(site_file: Path, site: Site, store: Store, state_dir: Path, *, host: str, port: int,
              cors_origins: tuple[str, ...] = (), runner_of: Callable[[], SiteRunner | None],
              any_port_if_taken: bool = False, store_target: str | None = None,
              access_log: bool = False, trusted_proxies: tuple[str, ...] = (),
              workers: int = 1) -> ServerHandle | WorkerPool:
    """Serve the API beside the runner; a port that cannot be used is a one-line error (exit 2).

    ``workers`` API processes (0: threads of this one). ``any_port_if_taken`` (the demo): a taken
    port falls back to a free one rather than failing, since the person running the demo did not
    choose it. Call ``wait_ready()`` on the result before printing its URL.
    """
    from crowdsafe.api.server import serve_in_thread  # uvicorn loads only when serving
    from crowdsafe.api.workers import start_workers

    if not is_loopback(host):
        err_console.print(f"listening on {host}: traffic is plain HTTP; put a TLS proxy in front before "
                          "exposing it beyond a trusted network", highlight=False)
    if (problem := port_problem(host, port)) is not None:
        if any_port_if_taken:
            err_console.print(f"{problem}; using a free port instead", highlight=False, markup=False)
            port = 0
        else:
            raise fail(f"--port {port}: {problem}; choose another port (0 picks a free one) or pass "
                       "--no-serve")
    settings = ApiSettings(site_file=site_file, store=store_target, state_dir=state_dir, host=host, port=port,
                           site=site, cors_origins=cors_origins, runtime_stats=runtime_stats(runner_of),
                           latest_rows=lambda table: (r.latest_rows(table) if (r := runner_of()) else None),
                           trusted_proxies=trusted_proxies,
                           capture_background=background_capture(runner_of),
                           undo_background=background_undo(runner_of), log_level="warning")
    try:
        if workers > 0:
            return start_workers(settings, workers)
        return serve_in_thread(settings, store=store, access_log=access_log)
    except (RuntimeError, OSError) as exc:
        raise fail(f"--port {port}: {exc}; choose another port (0 picks a free one) or pass --no-serve") \
            from None


def token_hint(state_dir: Path) -> str | None:
    """What to tell someone whose state dir has no token yet (nothing but /health would answer)."""
    try:
        if TokenBook(state_dir / TOKENS_FILE).entries():
            return None
    except (OSError, TokenError) as exc:
        return str(exc)
    return (f"no API tokens in {state_dir}: create one with "
            f"`crowdsafe token create --role viewer --state-dir {state_dir}`")


def ready_or_fail(api: ServerHandle | WorkerPool) -> None:
    """Before the URL is printed: every API worker accepts connections, or a one-line error (exit 2)."""
    try:
        api.wait_ready()
    except RuntimeError as exc:
        raise fail(f"{exc}; see the lines above, or pass --api-workers 0 to serve from this process") \
            from None
