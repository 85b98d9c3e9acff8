"""The API in processes of its own beside a runner (``crowdsafe run`` / ``demo``, ``--api-workers N``).

The counting process binds the listening socket (a taken port fails before the engine starts) and
starts N worker processes, ``python -m crowdsafe.api.workers``, that inherit it and accept from it
in turn: the kernel hands each connection to one worker. Each worker opens the store itself
(SQLite in WAL mode or PostgreSQL: readers never block the writer) and reads live state through
``api.channel``. Workers run ``api_nice`` steps nicer than counting, so under a burst the engine
gets the cores first, and no request ever holds the counting process's GIL.

Lifetime: the workers start in a process group of their own, so a terminal's Ctrl-C reaches the
counting process only, which stops its runner (the store flushed) and then its workers. Not in a
session of their own: where the kernel groups CPU time by session (Linux autogroup, on by default
on desktops and in many containers), a new session would weigh as much as the counting process
whatever its nice value, and a burst of requests would take frames from counting (measured:
docs/results/running.md). A worker also stops when its stdin closes, which is when the counting
process ends however it ends (killed included): no worker outlives it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crowdsafe.api.channel import ChannelClient, ChannelServer, LiveMirror, RemoteCaps, remote_action
from crowdsafe.api.settings import ApiSettings

log = logging.getLogger(__name__)

READY = "ready"
STOP_GRACE_S = 8.0  # uvicorn's graceful shutdown (3 s) plus a margin; then SIGTERM, then SIGKILL


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here as uvicorn would bind it, for the workers to inherit."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def worker_config(settings: ApiSettings, workers: int) -> dict[str, Any]:
    """What a worker rebuilds its ApiSettings from: the plain fields (the callables become the channel).

    The failed-authentication limit is per worker, so it is divided between them (rounded up): an
    address gets about the same number of guesses in a window as from one process, never N times it.
    """
    return {"site_file": str(settings.site_file), "store": settings.store_target,
            "state_dir": str(settings.state_dir), "host": settings.host, "port": settings.port,
            "cors_origins": list(settings.cors_origins), "trusted_proxies": list(settings.trusted_proxies),
            "log_level": settings.log_level, "api_nice": settings.api_nice,
            "auth_fail_limit": max(1, math.ceil(settings.auth_fail_limit / workers)),
            "auth_fail_window_s": settings.auth_fail_window_s}


@dataclass
class WorkerPool:
    """The workers, their listening socket and the channel they read; ``stop()`` ends all (idempotent)."""

    host: str
    port: int
    sock: socket.socket
    channel: ChannelServer
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _stopped: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every worker accepts connections (they queue in the socket's backlog meanwhile);
        RuntimeError naming the first that ended or did not start in time."""
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            assert proc.stdout is not None
            ready = _readline(proc.stdout, deadline - time.monotonic())
            if ready.strip() != READY:
                raise RuntimeError(f"API worker {proc.pid} did not start"
                                   + (f" (exit {proc.poll()})" if proc.poll() is not None else ""))

    def stop(self, timeout_s: float = STOP_GRACE_S) -> None:
        if self._stopped:
            return
        self._stopped = True
        for proc in self.procs:  # EOF on stdin: a graceful stop (live streams get their "bye")
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(3)
            if proc.stdout is not None:
                proc.stdout.close()
        self.sock.close()
        self.channel.stop()


def _readline(stream: IO[str], timeout_s: float) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, timeout_s))
    return got[0] if got else ""


def start_workers(settings: ApiSettings, workers: int) -> WorkerPool:
    """Bind ``settings.host:port`` here and start ``workers`` API processes on it, answering live
    state from ``settings``' providers (the runner's) over the channel. OSError: the port cannot be
    used. Returns at once; ``wait_ready()`` before telling anyone the URL is live."""
    sock = listen(settings.host, settings.port)
    port = sock.getsockname()[1]
    channel = ChannelServer(settings).start()
    pool = WorkerPool(host=settings.host, port=port, sock=sock, channel=channel)
    config = {**worker_config(settings, workers), "port": port, "fd": sock.fileno(),
              "channel": channel.address()}
    try:
        for _ in range(workers):
            proc = subprocess.Popen([sys.executable, "-m", "crowdsafe.api.workers"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, pass_fds=(sock.fileno(),),
                                    process_group=0)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(config) + "\n")
            proc.stdin.flush()
            pool.procs.append(proc)
    except BaseException:
        pool.stop(timeout_s=2.0)
        raise
    return pool


# -- the worker process ------------------------------------------------------------------------
def _worker_main() -> None:
    from crowdsafe.api.app import create_app
    from crowdsafe.api.server import _config, _Server

    config = json.loads(sys.stdin.readline())
    with contextlib.suppress(OSError):
        os.nice(int(config["api_nice"]))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s api worker %(process)d: %(message)s")
    address = config["channel"]
    mirror = LiveMirror(ChannelClient(address["path"], address["secret"]))
    commands = ChannelClient(address["path"], address["secret"], timeout_s=30.0)
    settings = ApiSettings(
        site_file=Path(config["site_file"]), store=config["store"], state_dir=Path(config["state_dir"]),
        host=config["host"], port=config["port"], cors_origins=tuple(config["cors_origins"]),
        trusted_proxies=tuple(config["trusted_proxies"]), log_level=config["log_level"],
        auth_fail_limit=config["auth_fail_limit"], auth_fail_window_s=config["auth_fail_window_s"],
        runtime_stats=mirror.runtime_stats, latest_rows=mirror.latest_rows,
        capture_background=remote_action(commands, "capture"),
        undo_background=remote_action(commands, "undo"),
        announce_reload=mirror.announce_reload)
    app = create_app(settings, admission=RemoteCaps(ChannelClient(address["path"], address["secret"])))
    mirror.start(lambda: app.state.crowdsafe.reload_site(announce=False))
    server = _Server(_config(app, settings, access_log=False))
    sock = socket.socket(fileno=int(config["fd"]))

    def watch_parent() -> None:
        sys.stdin.read()  # returns at EOF: the counting process closed it, or ended
        server.should_exit = True
        time.sleep(STOP_GRACE_S)
        os._exit(0)  # a graceful stop that hangs must not leave this process behind

    def announce_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            print(READY, flush=True)

    threading.Thread(target=watch_parent, name="crowdsafe-parent-watch", daemon=True).start()
    threading.Thread(target=announce_ready, name="crowdsafe-ready", daemon=True).start()
    server.run(sockets=[sock])
    mirror.stop()


if __name__ == "__main__":
    _worker_main()
