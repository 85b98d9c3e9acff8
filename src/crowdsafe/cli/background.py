"""``crowdsafe background capture``: tell a running site that a camera sees an empty site now.

The running pipeline owns the camera's density, so the command asks its API (the operator
route the dashboard's button uses) rather than reading the camera itself; no picture is taken.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated

import typer

from crowdsafe.cli.errors import fail

app = typer.Typer(help="Background density of a running site's cameras.", no_args_is_help=True)


CameraOption = Annotated[str, typer.Option("--camera", help="Camera id.", show_default=False)]
TokenOption = Annotated[str, typer.Option(envvar="CROWDSAFE_TOKEN", help="Operator or admin API token.",
                                          show_default=False)]
UrlOption = Annotated[str, typer.Option(help="The running site's API (`crowdsafe run` / `demo`).")]


def _post(url: str, camera: str, token: str, action: str) -> dict[str, object]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise fail(f"--url {url}: expected http:// or https://")
    target = f"{url.rstrip('/')}/api/cameras/{urllib.parse.quote(camera, safe='')}/background/{action}"
    request = urllib.request.Request(target, method="POST", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
        raise fail(f"camera {camera}: {detail} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise fail(f"no crowdsafe API at {url} ({reason}); is `crowdsafe run SITE.yaml` running?") from None


@app.command("capture")
def capture(camera: CameraOption, token: TokenOption, url: UrlOption = "http://127.0.0.1:8080") -> None:
    """Capture CAMERA's latest density as its background; refused while anyone is in view."""
    answer = _post(url, camera, token, "capture")
    typer.echo(f"camera {camera}: {answer['status']}")


@app.command("undo")
def undo(camera: CameraOption, token: TokenOption, url: UrlOption = "http://127.0.0.1:8080") -> None:
    """Restore the background CAMERA subtracted before its last capture."""
    answer = _post(url, camera, token, "undo")
    typer.echo(f"camera {camera}: capture undone; {answer['status']}")
