"""One way to fail on the command line: a clear message on stderr and exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from crowdsafe.counting.counter import ImageError
from crowdsafe.counting.engines import EngineUnavailable
from crowdsafe.counting.weights import WeightsError

err_console = Console(stderr=True)

#: Errors whose message is already written for a person; anything else is a bug and keeps its trace.
USER_ERRORS: tuple[type[Exception], ...] = (
    WeightsError, EngineUnavailable, ImageError, FileNotFoundError, ValueError)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def check_out_folder(option: str, path: Path | None) -> None:
    """Refuse an output file whose folder is missing before any work is done."""
    if path is not None and not path.parent.is_dir():
        raise fail(f"{option} {path}: folder {path.parent} does not exist")


def write_out(path: Path, text: str) -> None:
    """Write an output file; a failure (disk full, no permission) is one line, not a traceback."""
    try:
        path.write_text(text)
    except OSError as exc:
        raise fail(f"{path}: cannot write ({exc.strerror or exc})") from None


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into one readable line instead of a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
