"""Where crowdsafe keeps the files it makes for itself (weights, compiled models, what-if results).

Below every package that caches something, so the clearance what-ifs (``simulate``) and the
model weights (``counting``) share one folder without one importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "CROWDSAFE_CACHE"


def cache_dir() -> Path:
    """``$CROWDSAFE_CACHE``, else ``crowdsafe`` in the XDG user cache."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crowdsafe"
