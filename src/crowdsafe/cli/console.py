"""The stdout console for tables: wide enough when piped that columns are not truncated."""

from __future__ import annotations

from rich.console import Console

#: Width used when stdout is a file or pipe (rich would assume 80 and cut dataset names).
PIPE_WIDTH = 120


def stdout_console() -> Console:
    """No emoji codes: a frame range like ``0:100:10`` holds ``:100:``, which rich would print as 💯."""
    console = Console(highlight=False, emoji=False)
    return console if console.is_terminal else Console(highlight=False, emoji=False, width=PIPE_WIDTH)
