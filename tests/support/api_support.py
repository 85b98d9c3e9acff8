"""Helpers for the API tests: a demo-site store with realistic readings, tokens, a background.

The store and tokens come from ``crowdsafe.bench.demo_store`` (the API benchmark measures the same
data); the background image is test-only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crowdsafe.bench.demo_store import DEMO_SITE, demo_site, fill_demo_store, make_tokens, zone_row
from crowdsafe.store import open_store

__all__ = ["DEMO_SITE", "VIDEO", "demo_env", "demo_site", "fill_demo_store", "make_tokens",
           "write_background", "zone_row"]

VIDEO = DEMO_SITE.parent / "vtest.avi"


def write_background(state_dir: Path, camera_id: str = "view001", real: bool = False) -> Path:
    """A background JPEG where the runner would put one; ``real``: median of frames of the demo video."""
    folder = state_dir / "backgrounds"
    folder.mkdir(parents=True, exist_ok=True)
    if real:
        cap = cv2.VideoCapture(str(VIDEO))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 700
        frames = []
        for k in range(25):
            cap.set(cv2.CAP_PROP_POS_FRAMES, k * (total - 1) // 25)
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
        cap.release()
        image = np.median(np.stack(frames), axis=0).astype(np.uint8)
    else:
        image = np.full((576, 768, 3), 90, np.uint8)
        cv2.rectangle(image, (100, 300), (600, 560), (60, 120, 60), -1)
    path = folder / f"{camera_id}.jpg"
    cv2.imwrite(str(path), image)
    return path


def demo_env(tmp_path: Path, now: float) -> dict[str, Any]:
    """A state dir with a filled store, tokens and a background, and a copy of the demo site file."""
    state = tmp_path / "state"
    state.mkdir()
    site_file = tmp_path / "site.yaml"
    shutil.copy(DEMO_SITE, site_file)
    (tmp_path / "vtest.avi").touch()  # the site's relative source; the API never opens it
    store = open_store(state / "crowdsafe.sqlite")
    fill_demo_store(store, now)
    write_background(state)
    return {"state": state, "site_file": site_file, "store": store, "tokens": make_tokens(state)}
