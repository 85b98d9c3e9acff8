"""glibc malloc settings applied by ``run`` and ``demo`` (docs/results/running.md, "Memory over time")."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CHECK = "from crowdsafe.runtime.allocator import tune_malloc; print(tune_malloc())"


def tuned(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_malloc_is_tuned_unless_the_environment_already_chooses():
    assert tuned() == "True"  # glibc accepted both settings
    assert tuned(MALLOC_ARENA_MAX="4") == "False"  # the operator's own setting wins
