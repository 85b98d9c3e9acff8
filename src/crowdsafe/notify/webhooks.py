"""Webhook delivery: a bounded queue and one background thread, retries with backoff and jitter.

The pipeline must never wait for a slow or dead receiver, so ``send`` only enqueues. When the
queue is full the oldest undelivered message is dropped (and counted): the newest state of an
alert is the one an operator needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from crowdsafe.urls import redact

log = logging.getLogger(__name__)


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class WebhookNotifier:
    """POSTs JSON to each URL; ``close`` flushes what it can within a deadline."""

    def __init__(self, urls: list[str], max_queue: int = 1000, attempts: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, timeout_s: float = 5.0) -> None:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL must be http(s): {redact(url)!r}")
        self.urls = urls
        self.attempts, self.backoff_s, self.max_backoff_s = attempts, backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.stats = DeliveryStats()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crowdsafe-webhooks", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> None:
        """Enqueue without blocking; drop the oldest message if the receiver is far behind."""
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def close(self, deadline_s: float = 5.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(deadline_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            body = json.dumps(item, default=str).encode()
            for url in self.urls:
                self._deliver(url, body)

    def _deliver(self, url: str, body: bytes) -> None:
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                req = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        self.stats.delivered += 1
                        return
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                log.warning("webhook %s attempt %d/%d failed: %s", redact(url), attempt, self.attempts, exc)
            if attempt == self.attempts or self._stop.is_set():
                break
            self.stats.retries += 1
            time.sleep(min(delay, self.max_backoff_s) * random.uniform(0.5, 1.5))
            delay *= 2
        self.stats.failed += 1
