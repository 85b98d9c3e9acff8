"""Finding the PostgreSQL server binaries and how to run them, for a throwaway local cluster.

The store benchmark (``benchmarks/bench_ray.py``) and the PostgreSQL tests (``tests/support``)
both start a cluster with initdb + pg_ctl in a temporary directory; this is the part they share,
here so benchmarks never import the tests. PostgreSQL refuses to run as root, so under root the
cluster is owned by and run as the ``postgres`` system user (Debian's ``postgresql`` package).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (newest installed major version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    """A loopback TCP port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as_postgres() -> list[str]:
    """The command prefix that runs the server binaries as ``postgres`` when we are root, else []."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return []
    return ["runuser", "-u", "postgres", "--"]
