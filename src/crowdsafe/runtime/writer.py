"""Store writes on their own thread, buffered in memory while the database is away.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.writer``."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from crowdsafe.store.store import Store

log = logging.getLogger(__name__)

ALERTS = "alerts"
#: Seconds the writer lets reading rows gather after a write before the next: the frames of that
#: time go in one transaction, not two a frame (each a connection, pragmas and a commit on
#: SQLite; a round trip on PostgreSQL). The store lags the live feed by this at most.
GATHER_S = 0.25
#: Reading rows written in one transaction at most (a backlog after an outage goes in pieces).
GROUP_ROWS = 5_000
TRANSIENT = (OperationalError, DisconnectionError, PoolTimeout, OSError, ConnectionError)


@dataclass
class WriterStats:
    written: int = 0  # rows newly stored
    ignored: int = 0  # rows already stored (a retry or a restarted run)
    dropped: int = 0  # rows given up: buffer full, permanent error, or still pending at close
    failures: int = 0  # failed write attempts
    pending: int = 0
    outage_since: float | None = None
    last_error: str = ""


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures are worth retrying; a rejected row is not."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TRANSIENT):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__
    return False


class StoreWriter:
    """Ordered, retried, bounded writes to a :class:`Store` from one background thread."""

    def __init__(self, store: Store, *, max_rows: int = 100_000, backoff_s: float = 0.5,
                 max_backoff_s: float = 15.0, gather_s: float = GATHER_S,
                 group_rows: int = GROUP_ROWS) -> None:
        self.store = store
        self.max_rows = max_rows
        self.gather_s, self.group_rows = gather_s, group_rows
        self._writing = 0  # batches at the head of the queue being written now (never shed)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.stats = WriterStats()
        self._queue: deque[tuple[str, list[dict[str, Any]]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._close_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue reading rows (one batch, written in one transaction); never blocks on the store."""
        if rows:
            self._put(table, [dict(r) for r in rows])

    def save_alert(self, row: Mapping[str, Any]) -> None:
        self._put(ALERTS, [dict(row)])

    def _put(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self._cond:
            self._queue.append((table, rows))
            self.stats.pending += len(rows)
            self._shed()
            # Wake the writer only for what it waits on: a first batch, or a full group (not for
            # every batch while it lets them gather).
            if len(self._queue) == 1 or self.stats.pending >= self.group_rows:
                self._cond.notify()

    def _shed(self) -> None:
        """Drop the oldest reading batches beyond ``max_rows`` (never those being written: the head of
        the queue, ``_writing`` batches long while a group is written)."""
        i = max(self._writing, 1)
        while self.stats.pending > self.max_rows and i < len(self._queue):
            table, rows = self._queue[i]
            if table == ALERTS:
                i += 1
                continue
            del self._queue[i]
            self.stats.pending -= len(rows)
            self.stats.dropped += len(rows)
            log.warning("store buffer full: dropped %d %s rows", len(rows), table)

    def close(self, deadline_s: float = 10.0) -> bool:
        """Write what is queued, retrying until the deadline; True if everything was stored."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + deadline_s
            self._cond.notify_all()
        self._close_requested.set()
        self._thread.join(deadline_s + 5.0)
        with self._cond:
            left = self.stats.pending
        if left:
            log.error("store unreachable at shutdown: %d rows not written (%s)", left, self.stats.last_error)
        return left == 0

    def _run(self) -> None:
        attempt = 0
        alone = False  # after a group was refused: write batches one at a time to find the bad one
        last = -float("inf")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                # Let a few frames' rows gather (a close or a full group cuts it short).
                self._cond.wait_for(lambda: self._closing or self.stats.pending >= self.group_rows,
                                    timeout=max(last + self.gather_s - time.monotonic(), 0.0))
                group = self._group(alone)
                self._writing = len(group)
            try:
                self._execute(group)
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc).splitlines()[0][:300]
                if not is_transient(exc):
                    if len(group) > 1:
                        alone = True  # only the batch that is refused is dropped, not its group
                        continue
                    log.error("store refused %d %s rows, dropping them: %s", len(group[0][1]), group[0][0],
                              self.stats.last_error)
                    self._pop(group, dropped=True)
                    continue
                if self.stats.outage_since is None:
                    self.stats.outage_since = time.time()
                    log.warning("store unavailable, buffering readings: %s", self.stats.last_error)
                delay = min(self.backoff_s * 2 ** attempt, self.max_backoff_s) * random.uniform(0.5, 1.0)
                attempt += 1
                if not self._close_requested.is_set():
                    self._close_requested.wait(delay)  # a close request cuts the wait short
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return
                time.sleep(min(delay, remaining))
                continue
            if self.stats.outage_since is not None:
                log.warning("store back after %.1f s; %d rows pending", time.time() - self.stats.outage_since,
                            self.stats.pending)
                self.stats.outage_since = None
            attempt, alone, last = 0, False, time.monotonic()
            self._pop(group, dropped=False)

    def _group(self, alone: bool) -> list[tuple[str, list[dict[str, Any]]]]:
        """The queue's head: an alert alone, or the reading batches before the next alert (up to
        ``group_rows`` rows), written in one transaction. Called holding the lock."""
        group = [self._queue[0]]
        if alone or group[0][0] == ALERTS:
            return group
        rows = len(group[0][1])
        for table, batch in itertools.islice(self._queue, 1, None):
            if table == ALERTS or rows + len(batch) > self.group_rows:
                break
            group.append((table, batch))
            rows += len(batch)
        return group

    def _execute(self, group: list[tuple[str, list[dict[str, Any]]]]) -> None:
        if group[0][0] == ALERTS:
            self.store.save_alert(group[0][1][0])
            self.stats.written += 1
            return
        new = sum(self.store.write_many(group))
        self.stats.written += new
        self.stats.ignored += sum(len(rows) for _, rows in group) - new

    def _pop(self, group: list[tuple[str, list[dict[str, Any]]]], *, dropped: bool) -> None:
        with self._cond:
            self._writing = 0
            for _, rows in group:
                if self._queue and self._queue[0][1] is rows:
                    self._queue.popleft()
                    self.stats.pending -= len(rows)
                    if dropped:
                        self.stats.dropped += len(rows)
