"""Backpressure between camera readers and the shared counting engine.

Readers must never block (a blocked RTSP reader falls behind the camera and its buffer
grows without bound) and memory must not grow with load. So each camera has one slot holding
its newest sampled frame; a reader overwrites it (the older frame is dropped and counted),
and the engine takes frames round-robin across cameras, so one busy camera cannot starve the
others. Memory is bounded by one pending frame per camera.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class SlotStats:
    offered: int = 0
    taken: int = 0
    dropped: int = 0


class LatestSlots(Generic[T]):
    """One newest item per key; ``take`` returns the next key's item in round-robin order."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._order: list[str] = []
        self._next = 0
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # an item was put, or the slots closed
        self._taken = threading.Condition(lock)  # an item was taken
        self._closed = False
        self.stats: dict[str, SlotStats] = {}

    def put(self, key: str, item: T) -> None:
        """Never blocks: replaces (drops) the pending item of this key, if any."""
        with self._cond:
            stats = self.stats.setdefault(key, SlotStats())
            stats.offered += 1
            if key in self._items:
                stats.dropped += 1
            elif key not in self._order:
                self._order.append(key)
            self._items[key] = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> tuple[str, T] | None:
        """The next pending item, fairly across keys; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            n = len(self._order)
            for i in range(n):
                key = self._order[(self._next + i) % n]
                if key in self._items:
                    self._next = (self._next + i + 1) % n
                    self.stats[key].taken += 1
                    self._taken.notify_all()
                    return key, self._items.pop(key)
            return None

    def pending(self, key: str) -> bool:
        """Whether ``key`` has an item not yet taken (a reader that must not drop can wait on it)."""
        with self._cond:
            return key in self._items

    def wait_taken(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` has no item pending (or the slots closed); False on timeout. A
        reader that must not drop sleeps here rather than polling ``pending``."""
        with self._taken:
            return self._taken.wait_for(lambda: key not in self._items or self._closed, timeout)

    def depth(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._taken.notify_all()
