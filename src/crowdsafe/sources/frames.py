"""What every frame source yields, whatever it reads: files today, network streams later.

A source is an iterable of :class:`Frame` plus a list of :class:`SkippedFrame`. Skipping is
part of the contract because real footage has corrupt frames and real folders hold broken
files: one bad frame must cost one line in a report, not the whole job. Errors that make the
*whole* source unusable (missing path, not a video, empty folder) raise :class:`SourceError`.
Frames live only in memory; nothing here writes pixels anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


class FrameSource(Protocol):
    """Anything that yields frames and records what it had to skip.

    ``expected`` is the number of frames the iteration should yield when known (progress
    bars); it may be None for live streams.
    """

    name: str
    skipped: list[SkippedFrame]

    @property
    def expected(self) -> int | None: ...

    def __iter__(self) -> Iterator[Frame]: ...
