"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, loopback port.

Uses Debian's `postgresql` package (installed by .ci/run); finding the binaries and the user to
run them as is shared with the store benchmark (``crowdsafe.bench.postgres``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crowdsafe.bench.postgres import free_port, pg_bin, run_as_postgres


@contextmanager
def postgres_cluster() -> Iterator[tuple[str, PgControl]]:
    """Yield (SQLAlchemy URL, control) for a fresh cluster; removed afterwards."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    tmp = Path(tempfile.mkdtemp(prefix="crowdsafe-pg-"))
    run_as = run_as_postgres()
    if run_as:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    data = tmp / "data"
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    control = PgControl(bindir, data, tmp, port, run_as)
    control.start()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", control
    finally:
        control.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class PgControl:
    """Start/stop the test cluster (fault tests restart it mid-run)."""

    def __init__(self, bindir: Path, data: Path, tmp: Path, port: int, run_as: list[str]) -> None:
        self.bindir, self.data, self.tmp, self.port, self.run_as = bindir, data, tmp, port, run_as

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                        "-l", str(self.tmp / "log"), "-w", "-t", "30", "start"],
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                        "-w", "stop"], check=False, capture_output=True)
