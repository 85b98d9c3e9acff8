"""``crowdsafe token create|list|revoke``: API tokens for the dashboard and API clients."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.api.settings import DEFAULT_STATE_DIR, TOKENS_FILE
from crowdsafe.api.tokens import ROLES, TokenBook, TokenError
from crowdsafe.cli.errors import fail

app = typer.Typer(help="API tokens (roles: viewer, operator, admin); stored hashed in STATE_DIR/tokens.json.",
                  no_args_is_help=True)

StateDir = Annotated[Path, typer.Option(help="State dir holding tokens.json (as for `serve`).")]


def _book(state_dir: Path) -> TokenBook:
    return TokenBook(state_dir / TOKENS_FILE)


@app.command("create")
def create(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
    name: Annotated[str | None, typer.Option(help="Unique name, e.g. 'control-room'. Default: ROLE-N.",
                                             show_default=False)] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Create a token and print it once: only its hash is kept, so it cannot be shown again."""
    try:
        entry, token = _book(state_dir).create(role, name)
    except (TokenError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {entry.role} token '{entry.name}' (shown once; store it safely):", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Names and roles of the tokens (never the tokens or their hashes)."""
    try:
        entries = _book(state_dir).entries()
    except (TokenError, OSError) as exc:
        raise fail(str(exc)) from None
    if not entries:
        typer.echo(f"no tokens in {state_dir / TOKENS_FILE}", err=True)
    for e in entries:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created_ts))
        typer.echo(f"{e.name}\t{e.role}\t{created}")


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Token name (see `crowdsafe token list`).")],
           state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Revoke a token; a running server refuses it from its next request."""
    try:
        removed = _book(state_dir).revoke(name)
    except (TokenError, OSError) as exc:
        raise fail(str(exc)) from None
    if not removed:
        raise fail(f"no token named {name!r}")
    typer.echo(f"revoked '{name}'", err=True)
