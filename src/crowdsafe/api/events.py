"""Live feed over Server-Sent Events: new zone/line readings, camera health and alert changes.

One poller per app fans new rows out to every client; a client too slow to keep up is disconnected
rather than sent a feed with silent holes.

Why and how: docs/design-notes.md, ``crowdsafe.api.events``."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import StreamingResponse

import crowdsafe.api.shape as shape
import crowdsafe.store.queries as queries
from crowdsafe.api.auth import Principal, viewer
from crowdsafe.api.context import ApiState, api_state
from crowdsafe.api.proxies import client_address
from crowdsafe.api.tokens import role_rank

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["events"])

Event = tuple[str, str]  # (event name, JSON data), serialised once for all clients
_CLOSE: Event = ("", "")
_SOURCES = {"zone_readings": ("zone", "zone_id"), "line_readings": ("line", "line_id"),
            "camera_health": ("camera", "camera_id")}


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Event]
    overflowed: bool = False
    token: str = ""  # token name, for the per-token cap
    client: str = ""  # client address, for the per-client cap
    privileged: bool = False  # operator or admin: may use the reserved share
    lease: int = 0  # this stream's place in the caps (StreamCaps), given back when it ends


@dataclass
class _Cursor:
    ts: float | None = None
    seen: dict[tuple[str, ...], float] = field(default_factory=dict)  # key -> ts, within the look-back


class StreamRefused(Exception):
    """A live stream over its share: ``status`` 429 (this token's or address's) or 503 (the pool's)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status_code
        self.detail = detail


@dataclass(frozen=True)
class StreamLimits:
    per_token: int
    per_client: int
    total: int
    operator_reserve: float

    @classmethod
    def of(cls, settings: Any) -> StreamLimits:
        return cls(settings.sse_max_per_token, settings.sse_max_per_client, settings.sse_max_clients,
                   settings.sse_operator_reserve)

    def share(self, cap: int, privileged: bool) -> int:
        """Streams a cap leaves to one role: all of it for operators, the unreserved part for viewers."""
        return cap if privileged else int(cap * (1.0 - self.operator_reserve) + 1e-9)


class Admission(Protocol):
    def admit(self, token: str, client: str, privileged: bool) -> int: ...

    def release(self, lease: int) -> None: ...


class StreamCaps:
    """Who holds the live streams, against three caps (per token, per client address, the whole
    pool), with the operator reserve applied to each: viewer streams may fill at most
    ``1 - sse_operator_reserve`` of any cap, so no mix of viewer tokens and addresses can take the
    streams an operator needs. One per app; with API worker processes, one in the counting process
    for all of them (``api.channel``), so the caps are the site's, not each worker's."""

    def __init__(self, limits_of: Callable[[], StreamLimits]) -> None:
        self._limits_of = limits_of
        self._held: dict[int, tuple[str, str, bool]] = {}  # lease -> (token, client, privileged)
        self._next = 0
        self._lock = threading.Lock()

    def admit(self, token: str, client: str, privileged: bool) -> int:
        """A lease on one stream, or StreamRefused: 429 when this token's or this address's share
        is used (the caller can close one of its own); 503 when the pool is full for its role."""
        limits = self._limits_of()
        kind = "" if privileged else "viewer "
        with self._lock:
            held = list(self._held.values())
            for scope, cap, index, mine in (("this token", limits.per_token, 0, token),
                                            ("this address", limits.per_client, 1, client)):
                if not self._admits(limits, cap, [h for h in held if h[index] == mine], privileged):
                    share = limits.share(cap, privileged)
                    raise StreamRefused(status.HTTP_429_TOO_MANY_REQUESTS,
                                        f"{scope} already holds its {share} {kind}live streams; "
                                        "close one first")
            if not self._admits(limits, limits.total, held, privileged):
                raise StreamRefused(status.HTTP_503_SERVICE_UNAVAILABLE, "too many live clients")
            self._next += 1
            self._held[self._next] = (token, client, privileged)
            return self._next

    def release(self, lease: int) -> None:
        with self._lock:
            self._held.pop(lease, None)

    def __len__(self) -> int:
        return len(self._held)

    @staticmethod
    def _admits(limits: StreamLimits, cap: int, held: list[tuple[str, str, bool]], privileged: bool) -> bool:
        if len(held) >= cap:
            return False
        return privileged or sum(not h[2] for h in held) < limits.share(cap, privileged)


class EventHub:
    def __init__(self, state_of: Callable[[], ApiState], admission: Admission | None = None) -> None:
        self._state_of = state_of
        self.admission: Admission = admission or StreamCaps(lambda: StreamLimits.of(self.settings))
        self.subscribers: set[Subscriber] = set()
        self._cursors: dict[str, _Cursor] = {}
        self.events_sent = 0
        self.clients_dropped = 0
        self.poll_errors = 0
        self._closed = False
        self._lock = threading.Lock()  # polls run in worker threads; cursors are shared
        self.needs_prime = True

    @property
    def settings(self) -> Any:
        return self._state_of().settings

    def subscribe(self, token: str = "", client: str = "", role: str = "admin") -> Subscriber:
        """A new stream for ``token`` from ``client``, or 429/503 when its share is used up
        (``StreamCaps.admit``; with several API processes the counting process holds the one count)."""
        if self._closed:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "server is shutting down")
        privileged = role_rank(role) >= role_rank("operator")
        try:
            lease = self.admission.admit(token, client, privileged)
        except StreamRefused as exc:
            raise HTTPException(exc.status, exc.detail, headers={"Retry-After": "10"}) from None
        sub = Subscriber(asyncio.Queue(maxsize=self.settings.sse_queue_size), token=token, client=client,
                         privileged=privileged, lease=lease)
        self.subscribers.add(sub)
        return sub

    def share(self, cap: int, privileged: bool) -> int:
        return StreamLimits.of(self.settings).share(cap, privileged)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self.admission.release(sub.lease)
        if not self.subscribers:
            self.needs_prime = True  # nobody watching: the next client starts from "now", not from here

    def prime(self) -> None:
        """Set the cursors to what is stored now, sending nothing: a new client wants what comes next."""
        with self._lock:
            self._cursors.clear()
            self._poll(quiet=True)
            self.needs_prime = False

    def close(self) -> None:
        """End every stream, so a graceful shutdown need not wait for clients that never leave."""
        self._closed = True
        for sub in list(self.subscribers):
            self._offer(sub, _CLOSE, force=True)

    def queue_depth(self) -> int:
        return max((s.queue.qsize() for s in self.subscribers), default=0)

    # -- polling ----------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.sse_poll_s)
            if not self.subscribers:
                continue
            try:
                events = await anyio.to_thread.run_sync(self.poll)
            except Exception as exc:  # a store hiccup (StoreError, OperationalError) must not kill the feed
                self.poll_errors += 1
                log.warning("live feed: store poll failed: %s", exc)
                continue
            for event in events:
                for sub in list(self.subscribers):
                    self._offer(sub, event)
            self.events_sent += len(events) * len(self.subscribers)

    def _offer(self, sub: Subscriber, event: Event, force: bool = False) -> None:
        if sub.overflowed and not force:
            return
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            if not sub.overflowed:
                sub.overflowed = True
                self.clients_dropped += 1
            if force:  # the close marker must get through: it replaces the oldest event
                sub.queue.get_nowait()
                sub.queue.put_nowait(event)

    def poll(self) -> list[Event]:
        """New rows since the last poll, as events."""
        with self._lock:
            return self._poll(quiet=False)

    def _poll(self, quiet: bool) -> list[Event]:
        state = self._state_of()
        view = state.site_view
        lookback = state.settings.sse_lookback_s
        events: list[Event] = []
        ids = {"zone_readings": view.zone_ids, "line_readings": view.line_ids,
               "camera_health": view.camera_ids}
        for table, (name, key) in _SOURCES.items():
            cursor = self._cursors.get(table)
            table_quiet = quiet or cursor is None
            if cursor is None:
                cursor = self._cursors[table] = _Cursor(queries.newest_ts(state.store, table))
            since = None if cursor.ts is None else cursor.ts - lookback
            rows = state.store.query(table, start=since, limit=5_000)
            for row in rows:
                k = (row[key], repr(row["ts"]))
                if k in cursor.seen or row[key] not in ids[table]:
                    continue
                cursor.seen[k] = row["ts"]
                if not table_quiet:
                    events.append((name, _dump(_shape(name, view, row))))
            self._advance(cursor, [r["ts"] for r in rows], lookback)
        events += self._alert_events(state, lookback, quiet)
        return events

    def _alert_events(self, state: ApiState, lookback: float, quiet: bool) -> list[Event]:
        cursor = self._cursors.get("alerts")
        quiet = quiet or cursor is None
        if cursor is None:
            cursor = self._cursors["alerts"] = _Cursor(queries.newest_alert_ts(state.store))
        since = 0.0 if cursor.ts is None else cursor.ts - lookback
        events = []
        stamps = []
        for row in queries.alerts_changed_since(state.store, since):
            stamps_of_row = (row["raised_ts"], row["acknowledged_ts"], row["cleared_ts"],
                             row.get("last_raised_ts"))
            changed = max(t for t in stamps_of_row if t is not None)
            stamps.append(changed)
            k = (row["alert_id"], row["state"], str(row.get("occurrences") or 1))
            if k in cursor.seen:
                continue
            cursor.seen[k] = changed
            if not quiet:
                events.append(("alert", _dump(shape.alert(row))))
        self._advance(cursor, stamps, lookback)
        return events

    @staticmethod
    def _advance(cursor: _Cursor, stamps: list[float], lookback: float) -> None:
        if stamps:
            cursor.ts = max([*stamps, cursor.ts] if cursor.ts is not None else stamps)
        if cursor.ts is not None:
            cutoff = cursor.ts - lookback
            cursor.seen = {k: t for k, t in cursor.seen.items() if t >= cutoff}


def _shape(name: str, view: Any, row: dict[str, Any]) -> dict[str, Any]:
    if name == "zone":
        return shape.zone_reading(view, row)
    if name == "line":
        return shape.line_reading(row)
    return shape.camera_health(row)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


async def _stream(hub: EventHub, sub: Subscriber, heartbeat_s: float) -> AsyncIterator[str]:
    try:
        yield "retry: 3000\n\n"
        yield "event: hello\ndata: {}\n\n"
        while True:
            try:
                name, data = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if (name, data) == _CLOSE:
                yield "event: bye\ndata: {}\n\n"
                return
            yield f"event: {name}\ndata: {data}\n\n"
            if sub.overflowed and sub.queue.empty():
                yield "event: overflow\ndata: {}\n\n"
                return
    finally:
        hub.unsubscribe(sub)


@router.get("/events", summary="Live feed (Server-Sent Events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, who: Annotated[Principal, Depends(viewer)]) -> StreamingResponse:
    """Events ``zone``, ``line``, ``camera`` (same shapes as the REST lists' ``reading``/``health``)
    and ``alert`` (the alert row after a change); ``overflow`` then end of stream if this client fell
    too far behind: reload the snapshot and reconnect. Needs the Authorization header (use fetch
    streaming in a browser; EventSource cannot send it). 429 when this token or address already
    holds its share of streams; 503 when the pool is full (a share is kept for operator tokens)."""
    hub: EventHub = request.app.state.crowdsafe_events
    if hub.needs_prime:
        await anyio.to_thread.run_sync(hub.prime)
    state = api_state(request)
    # In a thread: with API worker processes, admission asks the counting process (api.channel).
    sub = await anyio.to_thread.run_sync(hub.subscribe, who.name,
                                         client_address(request, state.trusted_proxies), who.role)
    return StreamingResponse(_stream(hub, sub, state.settings.sse_heartbeat_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
