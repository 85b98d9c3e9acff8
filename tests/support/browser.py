"""What the browser tests share: where Chromium is, how it is started, and a real `crowdsafe serve`
on a free 127.0.0.1 port, so every dashboard test drives the same server the way a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

CHROMIUM = os.environ.get("CROWDSAFE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: The flags this machine's closed network needs (no background connections to be refused).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(site_file: Path, state: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """`crowdsafe serve` over ``state`` in its own process; yields its URL once /health answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "crowdsafe.cli.main", "serve", str(site_file),
                             "--state-dir", str(state), "--port", str(port), "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("crowdsafe serve did not start:\n" + (proc.stdout.read() if proc.stdout else ""))
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
