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
from typing import Annotated, Any

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


@dataclass
class _Cursor:
    ts: float | None = None
    seen: dict[tuple[str, ...], float] = field(default_factory=dict)  # key -> ts, within the look-back


class EventHub:
    def __init__(self, state_of: Callable[[], ApiState]) -> None:
        self._state_of = state_of
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
        """A new stream for ``token`` from ``client``, or 429/503 when its share is used up.

        Three caps (per token, per client address, the whole pool), and the operator reserve
        applies to each: viewer streams may fill at most ``1 - sse_operator_reserve`` of any cap,
        so no mix of viewer tokens and addresses can take the streams an operator needs. 429 when
        this token's or this address's share is used (the caller can close one of its own); 503
        when the pool is full for its role (the server is busy).
        """
        if self._closed:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "server is shutting down")
        settings = self.settings
        privileged = role_rank(role) >= role_rank("operator")
        kind = "" if privileged else "viewer "
        for scope, cap, mine in (("this token", settings.sse_max_per_token, lambda s: s.token == token),
                                 ("this address", settings.sse_max_per_client, lambda s: s.client == client)):
            held = [s for s in self.subscribers if mine(s)]
            if not self._admits(cap, held, privileged):
                raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                    f"{scope} already holds its {self.share(cap, privileged)} {kind}live "
                                    "streams; close one first", headers={"Retry-After": "10"})
        if not self._admits(settings.sse_max_clients, list(self.subscribers), privileged):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "too many live clients",
                                headers={"Retry-After": "10"})
        sub = Subscriber(asyncio.Queue(maxsize=settings.sse_queue_size), token=token, client=client,
                         privileged=privileged)
        self.subscribers.add(sub)
        return sub

    def share(self, cap: int, privileged: bool) -> int:
        """Streams a cap leaves to one role: all of it for operators, the unreserved part for viewers."""
        return cap if privileged else int(cap * (1.0 - self.settings.sse_operator_reserve) + 1e-9)

    def _admits(self, cap: int, held: list[Subscriber], privileged: bool) -> bool:
        if len(held) >= cap:
            return False
        return privileged or sum(not s.privileged for s in held) < self.share(cap, privileged)

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
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
    sub = hub.subscribe(who.name, client_address(request, state.trusted_proxies), who.role)
    return StreamingResponse(_stream(hub, sub, state.settings.sse_heartbeat_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
