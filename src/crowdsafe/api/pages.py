"""The dashboard and API docs pages, and their static files, all from installed packages.

Nothing is fetched from the internet: the dashboard's own files are package data of
``crowdsafe.dashboard``, plotly.js comes from the installed ``plotly`` wheel and Swagger UI
from ``swagger_ui_bundle``. Only names in a fixed table are served, so no path from a request
ever reaches the file system. The pages hold no data; they ask for a token and call the API.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)
_DASHBOARD = importlib.resources.files("crowdsafe.dashboard")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".png": "image/png"}
OWN_FILES = ("app.js", "map.js", "charts.js", "sse.js", "style.css", "docs.js", "forecast.js", "setup.js")


def _vendor_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    try:
        import plotly

        files["plotly.min.js"] = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    except ImportError:  # the dashboard still shows map, lists and alerts; charts say why they are missing
        pass
    try:
        import swagger_ui_bundle

        base = Path(swagger_ui_bundle.swagger_ui_path)
        files["swagger-ui-bundle.js"] = base / "swagger-ui-bundle.js"
        files["swagger-ui.css"] = base / "swagger-ui.css"
    except ImportError:
        pass
    return {name: path for name, path in files.items() if path.is_file()}


VENDOR = _vendor_files()


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(_DASHBOARD.joinpath(name).read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


@router.get("/")
def dashboard() -> HTMLResponse:
    return _page("index.html")


@router.get("/setup")
def setup() -> HTMLResponse:
    """The Setup page (its data routes are admin-only; the page itself holds nothing)."""
    return _page("setup.html")


@router.get("/docs")
def docs() -> HTMLResponse:
    return _page("docs.html")


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name in OWN_FILES:
        data = _DASHBOARD.joinpath(name).read_bytes()
        return Response(data, media_type=_TYPES[Path(name).suffix], headers={"Cache-Control": "no-cache"})
    if name in VENDOR:
        return FileResponse(VENDOR[name], media_type=_TYPES[Path(name).suffix],
                            headers={"Cache-Control": "public, max-age=86400"})
    raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
