"""The live channel between the counting process and its API worker processes.

``crowdsafe run`` and ``demo`` serve the API from separate processes (``api.workers``) so a burst
of requests never takes the GIL or the cores from counting. Everything durable the API already
reads from the store (readings, alerts, health, audit); what only the running process knows comes
through this channel, a Unix socket in a private folder (0700) of the machine, never a network
port, and every connection must first show a random secret the workers were handed on stdin:

- ``snapshot``: the runner's live numbers (``RuntimeStats``) and newest row per zone and line,
  mirrored by each worker every ``MIRROR_EVERY_S`` (``LiveMirror``), plus the site generation;
- ``capture`` / ``undo``: an operator's background action, run by the pipeline, with its reply
  (a refusal's reason comes back for the 409);
- ``admit`` / ``release``: live-stream leases against one ``StreamCaps`` for all workers, so the
  per-token, per-address and pool caps are the site's, not each worker's; a worker's leases go
  when its connection closes (it crashed or stopped);
- ``site_reloaded``: a worker re-read the site file; the others see the generation move and
  re-read it too.

One JSON object per line each way. The server answers from threads of its own and only calls the
same providers the in-process API calls (``ApiSettings`` of the runner), so the counting threads
do no more work for N workers than for one.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import queue
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crowdsafe.api.events import StreamCaps, StreamLimits, StreamRefused
from crowdsafe.api.settings import ApiSettings, RuntimeStats

log = logging.getLogger(__name__)

MIRROR_EVERY_S = 0.5  # how stale a worker's live numbers and latest rows may be
LATEST_TABLES = ("zone_readings", "line_readings")
_MAX_LINE = 16 * 1024 * 1024


class ChannelError(RuntimeError):
    """The counting process did not answer (stopping, or gone)."""


def _plain(value: Any) -> Any:
    """numpy scalars in rows, as JSON numbers."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message, default=_plain, separators=(",", ":")).encode() + b"\n")


class _Handler(socketserver.StreamRequestHandler):
    server: ChannelServer

    def handle(self) -> None:
        leases: set[int] = set()
        try:
            hello = self._read()
            if hello is None or not hmac.compare_digest(str(hello.get("secret", "")), self.server.secret):
                return
            _send(self.connection, {"ok": True})
            while (request := self._read()) is not None:
                _send(self.connection, self.server.answer(request, leases))
        except (OSError, ValueError) as exc:
            log.debug("live channel: connection ended: %s", exc)
        finally:
            for lease in leases:  # a worker that stopped or crashed frees its streams
                self.server.caps.release(lease)

    def _read(self) -> dict[str, Any] | None:
        line = self.rfile.readline(_MAX_LINE)
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        return message


class ChannelServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The counting process's end: answers from ``settings``' providers (the runner's)."""

    daemon_threads = True

    def __init__(self, settings: ApiSettings) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="crowdsafe-live-"))  # 0700: this user only
        self.path = self.folder / "channel.sock"
        self.secret = os.urandom(24).hex()
        self.settings = settings
        self.caps = StreamCaps(lambda: StreamLimits.of(settings))
        self.generation = 0
        self._lock = threading.Lock()
        super().__init__(str(self.path), _Handler)
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="crowdsafe-live-channel", daemon=True)

    def start(self) -> ChannelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown()
        self.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def answer(self, request: dict[str, Any], leases: set[int]) -> dict[str, Any]:
        op = request.get("op")
        settings = self.settings
        if op == "snapshot":
            stats = settings.runtime_stats() if settings.runtime_stats is not None else None
            latest = {t: (settings.latest_rows(t) if settings.latest_rows is not None else None)
                      for t in LATEST_TABLES}
            return {"generation": self.generation, "stats": None if stats is None else asdict(stats),
                    "latest": latest}
        if op in ("capture", "undo"):
            act = settings.capture_background if op == "capture" else settings.undo_background
            if act is None:
                return {"done": False, "detail": "no runner in this process counts this camera"}
            done, detail = act(str(request.get("camera", "")))
            return {"done": done, "detail": detail}
        if op == "admit":
            try:
                lease = self.caps.admit(str(request.get("token", "")), str(request.get("client", "")),
                                        bool(request.get("privileged")))
            except StreamRefused as exc:
                return {"refused": exc.status, "detail": exc.detail}
            leases.add(lease)
            return {"lease": lease}
        if op == "release":
            lease = int(request.get("lease", 0))
            if lease in leases:
                leases.discard(lease)
                self.caps.release(lease)
            return {}
        if op == "site_reloaded":
            with self._lock:
                self.generation += 1
                return {"generation": self.generation}
        return {"error": f"unknown op {op!r}"}

    def address(self) -> dict[str, str]:
        """What a worker needs to connect (handed over on its stdin, never in argv or the environment)."""
        return {"path": str(self.path), "secret": self.secret}


class ChannelClient:
    """A worker's end: one connection, one request at a time, reconnecting once after a failure."""

    def __init__(self, path: str, secret: str, timeout_s: float = 10.0) -> None:
        self.path = path
        self.secret = secret
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._connect()
                    assert self._sock is not None
                    _send(self._sock, {"op": op, **args})
                    line = self._file.readline(_MAX_LINE)
                    if not line:
                        raise ConnectionError("channel closed")
                    answer: dict[str, Any] = json.loads(line)
                    return answer
                except (OSError, ValueError) as exc:
                    self._drop()
                    if attempt == 2:
                        raise ChannelError(f"live channel: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
            _send(sock, {"secret": self.secret})
            file = sock.makefile("rb")
            if not file.readline(_MAX_LINE):
                raise ConnectionError("channel refused the secret")
        except BaseException:
            sock.close()
            raise
        self._sock, self._file = sock, file

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._file.close()
                self._sock.close()
        self._sock = self._file = None


class RemoteCaps:
    """``Admission`` for a worker: leases from the counting process's one ``StreamCaps``.
    Releases go out from a thread of their own, so a stream's end never waits on the channel."""

    def __init__(self, client: ChannelClient) -> None:
        self.client = client
        self._releases: queue.SimpleQueue[int] = queue.SimpleQueue()
        threading.Thread(target=self._release_loop, name="crowdsafe-stream-release", daemon=True).start()

    def admit(self, token: str, client: str, privileged: bool) -> int:
        try:
            answer = self.client.call("admit", token=token, client=client, privileged=privileged)
        except ChannelError:
            raise StreamRefused(503, "live streams unavailable: the counting process does not answer") \
                from None
        if "refused" in answer:
            raise StreamRefused(int(answer["refused"]), str(answer["detail"]))
        return int(answer["lease"])

    def release(self, lease: int) -> None:
        self._releases.put(lease)

    def _release_loop(self) -> None:
        while True:
            lease = self._releases.get()
            with contextlib.suppress(ChannelError):
                self.client.call("release", lease=lease)


class LiveMirror:
    """The counting process's live numbers as this worker last fetched them, every ``every_s``.

    Requests read the mirror, never the channel, so a burst of /api/zones costs the counting
    process nothing; a mirror older than a few periods (the counting process stopping) answers
    None and the API falls back to the store, as ``crowdsafe serve`` does."""

    def __init__(self, client: ChannelClient, every_s: float = MIRROR_EVERY_S) -> None:
        self.client = client
        self.every_s = every_s
        self._snapshot: dict[str, Any] = {}
        self._at = 0.0
        self.generation: int | None = None
        self._stop = threading.Event()

    def start(self, on_site_reloaded: Callable[[], None]) -> None:
        self.refresh(on_site_reloaded)
        threading.Thread(target=self._loop, args=(on_site_reloaded,), name="crowdsafe-live-mirror",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, on_site_reloaded: Callable[[], None]) -> None:
        while not self._stop.wait(self.every_s):
            self.refresh(on_site_reloaded)

    def refresh(self, on_site_reloaded: Callable[[], None]) -> None:
        try:
            snapshot = self.client.call("snapshot")
        except ChannelError as exc:
            log.debug("%s", exc)
            return
        self._snapshot, self._at = snapshot, time.monotonic()
        generation = int(snapshot.get("generation", 0))
        if self.generation is not None and generation > self.generation:
            try:
                on_site_reloaded()
            except Exception as exc:  # a broken site file: this worker keeps its view, as the route does
                log.warning("site reload announced by another API worker failed here: %s", exc)
        self.generation = max(generation, self.generation or 0)

    def announce_reload(self) -> int:
        """This worker re-read the site file: move the generation on (the others follow)."""
        try:
            generation = int(self.client.call("site_reloaded")["generation"])
        except ChannelError:
            return self.generation or 0
        self.generation = max(generation, self.generation or 0)
        return generation

    def _fresh(self) -> dict[str, Any] | None:
        if not self._snapshot or time.monotonic() - self._at > max(5.0, 4 * self.every_s):
            return None
        return self._snapshot

    def latest_rows(self, table: str) -> list[dict[str, Any]] | None:
        snapshot = self._fresh()
        return None if snapshot is None else snapshot["latest"].get(table)

    def runtime_stats(self) -> RuntimeStats:
        snapshot = self._fresh()
        stats = None if snapshot is None else snapshot.get("stats")
        return RuntimeStats() if stats is None else RuntimeStats(**stats)


def remote_action(client: ChannelClient, op: str) -> Callable[[str], tuple[bool, str]]:
    """``capture_background`` / ``undo_background`` for a worker: the pipeline answers, refusals included."""

    def act(camera_id: str) -> tuple[bool, str]:
        try:
            answer = client.call(op, camera=camera_id)
        except ChannelError:
            return False, "the counting process is not answering"
        return bool(answer.get("done")), str(answer.get("detail", ""))

    return act
