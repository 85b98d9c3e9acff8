"""glibc malloc settings for a long-running site, applied from inside the process.

Frames and density maps are large, short-lived buffers; with glibc's defaults they fragment
per-thread arenas and RSS grows in steps for the first quarter hour
(docs/results/running.md, "Memory over time").
``mallopt`` sets the same as ``MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=262144`` would, so a
service gets the measured behaviour without editing its environment.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's malloc.h
SETTINGS = ((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 256 * 1024))


def tune_malloc() -> bool:
    """Apply ``SETTINGS`` before threads start; False (nothing changed) off glibc or where the
    user chose their own ``MALLOC_*`` variables, which then win."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: its own allocator, left alone
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in SETTINGS)
