"""``crowdsafe serve SITE.yaml``: the API and live dashboard over a store filled by ``crowdsafe run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.api.proxies import parse_networks
from crowdsafe.api.settings import DEFAULT_STATE_DIR, ApiSettings
from crowdsafe.api.tokens import TokenBook, TokenError
from crowdsafe.cli.errors import err_console, fail, user_errors
from crowdsafe.cli.live import is_loopback
from crowdsafe.cli.options import (
    CorsOriginOption,
    LiveSiteFile,
    LiveStoreOption,
    TrustedProxyOption,
    log_to_stderr,
)
from crowdsafe.config.site import SiteError, load_site
from crowdsafe.store import StoreError


def checked_proxies(specs: list[str] | None) -> tuple[str, ...]:
    """``--trusted-proxy`` values, checked now so a typo is an error at start, not a silent no-op."""
    try:
        parse_networks(specs or ())
    except ValueError as exc:
        raise fail(f"--trusted-proxy: {exc}") from None
    return tuple(specs or ())


def serve(
    site_file: LiveSiteFile,
    store: LiveStoreOption = None,
    state_dir: Annotated[Path, typer.Option(
        help="Folder with the store (by default), tokens.json and backgrounds/.")] = DEFAULT_STATE_DIR,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")] = 8080,
    cors_origin: CorsOriginOption = None,
    trusted_proxy: TrustedProxyOption = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
) -> None:
    """Serve the REST API, live feed, Prometheus metrics and dashboard (http://HOST:PORT/)."""
    log_to_stderr()
    with user_errors():
        try:
            site = load_site(site_file)
        except SiteError as exc:
            raise fail(str(exc)) from None
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tokens = TokenBook(state_dir / "tokens.json").entries()
    except (OSError, TokenError) as exc:
        raise fail(str(exc)) from None
    if not tokens:
        err_console.print(f"no API tokens in {state_dir}: create one with "
                          f"`crowdsafe token create --role admin --state-dir {state_dir}`", highlight=False)
    if not is_loopback(host):
        err_console.print(f"listening on {host}: traffic is plain HTTP; put a TLS proxy in front before "
                          "exposing it beyond a trusted network", highlight=False)
    settings = ApiSettings(site_file=site_file, store=store, state_dir=state_dir, host=host, port=port,
                           site=site, cors_origins=tuple(cors_origin or ()),
                           trusted_proxies=checked_proxies(trusted_proxy))
    from crowdsafe.api.server import serve as run_server  # uvicorn loads only for this command

    typer.echo(f"serving site '{site.name}' on http://{host}:{port}/ (API docs at /docs); Ctrl-C to stop",
               err=True)
    try:
        run_server(settings, access_log=access_log)
    except StoreError as exc:
        raise fail(str(exc)) from None
