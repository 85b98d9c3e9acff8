"""One progress bar style for long commands, on stderr so stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from crowdsafe.cli.errors import err_console


@contextmanager
def progress_bar(description: str, total: int | None,
                 enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Yields ``advance()``; draws nothing when disabled or stderr is not a terminal.

    Rich would otherwise print the final bar into logs and CI output, where it is noise.
    The bar is filled to the end on exit, since skipped items never call ``advance``.
    """
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
        disable=not enabled or not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task(escape(description), total=total)
        yield lambda: progress.advance(task)
        if total is not None:
            progress.update(task, completed=total)
