"""The demo site with a test sampling period, the CLI and polling helpers, shared by the runner,
fault, privacy and forecast-runner tests (a test module never imports another one)."""

from __future__ import annotations

import sqlite3
import sys
import time
from importlib import resources
from pathlib import Path

from crowdsafe.bench.demo_store import demo_site_file

DEMO = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
VIDEO = DEMO.parent / "vtest.avi"
ZONES = {"walkway", "lawn", "forecourt"}
IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"BM", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*")


def precision_flag() -> str:
    plan = Path(str(resources.files("crowdsafe.counting") / "int8_plan.json"))
    return "int8" if plan.is_file() else "fp32"


def demo_site(tmp_path: Path, every: str = "2s", source: str | None = None, scale: float = 1.0) -> Path:
    """The demo site with an absolute source, a test sampling period and optionally scaled pixels."""
    return demo_site_file(tmp_path, every, source, scale)


def image_files_under(root: Path) -> list[Path]:
    """Every file that is an image by name or by content."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        head = path.read_bytes()[:8]
        if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} \
                or head.startswith(IMAGE_MAGIC):
            found.append(path)
    return found


def wait_for(predicate: object, timeout: float, step: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False


def zone_ts(db: Path) -> set[float]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return {r[0] for r in conn.execute("SELECT ts FROM zone_readings")}
    except sqlite3.OperationalError:
        return set()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "crowdsafe.cli.main", "run", *args]
