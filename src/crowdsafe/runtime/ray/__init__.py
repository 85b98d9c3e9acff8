"""The Ray runner: the local runner's stages spread over a Ray cluster (``pip install 'crowdsafe[ray]'``).

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray``."""

from __future__ import annotations

import importlib.util

RAY_EXTRA_HINT = "Ray is not installed: pip install 'crowdsafe[ray]'"


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None
