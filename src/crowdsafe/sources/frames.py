"""What every frame source yields, whatever it reads: files today, network streams later.

A source is an iterable of :class:`Frame` plus a :class:`SkipLog` of :class:`SkippedFrame`. Skipping is
part of the contract because real footage has corrupt frames and real folders hold broken
files: one bad frame must cost one line in a report, not the whole job. Errors that make the
*whole* source unusable (missing path, not a video, empty folder) raise :class:`SourceError`.
Frames live only in memory; nothing here writes pixels anywhere.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class SourceError(ValueError):
    """The source cannot be read at all; the message names the path and the reason."""


@dataclass(frozen=True)
class Frame:
    """One image to count. ``timestamp`` is seconds from the start of a video, else None."""

    source: str
    index: int
    timestamp: float | None
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Grab:
    """A frame read from a live source but not yet turned into pixels.

    A live reader has to consume every frame of its feed but needs pixels only for the few it
    samples, so sources that can (``grabs()``) hand out grabs and leave the colour conversion
    and copy to ``decode()``, which is valid only until the next grab is taken.
    """

    source: str
    index: int
    timestamp: float
    _decode: Callable[[], np.ndarray | None] = field(repr=False)

    def decode(self) -> np.ndarray | None:
        """The frame's pixels, or None if it cannot be decoded (recorded by the source)."""
        return self._decode()


@dataclass(frozen=True)
class SkippedFrame:
    """A frame or file that was passed over, and why (shown to the user at the end)."""

    source: str
    index: int | None
    reason: str


#: Skipped frames a source keeps the reasons of; older ones are only counted.
SKIP_LOG_SIZE = 1000


class SkipLog(deque[SkippedFrame]):
    """The last ``maxlen`` skipped frames, plus how many were skipped in all (``total``).

    A looped file or a live stream with a bad patch skips frames for as long as it runs, so a
    plain list of them grows without limit (a slow leak in a runner that runs for weeks). The
    report needs the count and recent reasons, not every one: this keeps both in bounded memory.
    Finite sources (a file counted once) pass ``maxlen=None``: their report lists every skip.
    """

    def __init__(self, items: Iterable[SkippedFrame] = (), maxlen: int | None = SKIP_LOG_SIZE) -> None:
        super().__init__((), maxlen)
        self.total = 0
        self.extend(items)

    def append(self, item: SkippedFrame) -> None:
        self.total += 1
        super().append(item)

    def extend(self, items: Iterable[SkippedFrame]) -> None:
        for item in items:
            self.append(item)

    def __eq__(self, other: object) -> bool:
        """Equal to a list with the same kept items, as the plain list it replaces was."""
        if isinstance(other, list | deque):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like deque


class FrameSource(Protocol):
    """Anything that yields frames and records what it had to skip.

    ``expected`` is the number of frames the iteration should yield when known (progress
    bars); it may be None for live streams. ``skipped`` keeps the recent reasons and the total.
    """

    name: str
    skipped: SkipLog

    @property
    def expected(self) -> int | None: ...

    def __iter__(self) -> Iterator[Frame]: ...


class LiveSource:
    """A source that yields until ``stop()`` (from any thread), so it never knows how many frames."""

    _stop: threading.Event  # set by the subclass's __init__

    @property
    def expected(self) -> int | None:
        return None

    def stop(self) -> None:
        self._stop.set()
