"""Runs the crowdsafe CLI with a thread that dumps tracemalloc growth, for the soak (benchmarks/soak.py).

    python -X tracemalloc=10 benchmarks/tracemalloc_run.py OUT.jsonl EVERY_S -- run site.yaml ...

Why a wrapper and not an option of the CLI: tracing every allocation costs CPU and memory, so it must
not sit on the normal code path; here it exists only when the soak asks for it. Every ``EVERY_S``
seconds one JSON line goes to ``OUT.jsonl``: the traced Python heap, tracemalloc's own overhead, and
the 20 tracebacks whose live size grew most since the first snapshot (taken after one period, past
start-up). A Python-level leak shows as one entry growing line after line; a flat traced heap while
RSS grows points at native or allocator memory instead.
"""

from __future__ import annotations

import json
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

TOP = 20


def _dump_loop(out: Path, every_s: float) -> None:
    """Appends one growth record per period; the baseline is the first snapshot, not process start."""
    started = time.monotonic()
    time.sleep(every_s)
    base = tracemalloc.take_snapshot()
    while True:
        time.sleep(every_s)
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(base, "traceback")[:TOP]
        current, peak = tracemalloc.get_traced_memory()
        record = {"t_s": round(time.monotonic() - started, 1), "traced_mb": current / 2**20,
                  "traced_peak_mb": peak / 2**20,
                  "tracemalloc_overhead_mb": tracemalloc.get_tracemalloc_memory() / 2**20,
                  "top_growth": [{"size_diff_kb": s.size_diff / 1024, "size_kb": s.size / 1024,
                                  "count_diff": s.count_diff,
                                  "where": [f"{f.filename}:{f.lineno}" for f in s.traceback][-6:]}
                                 for s in stats]}
        del snap, stats
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def main() -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
    out, every = Path(sys.argv[1]), float(sys.argv[2])
    rest = sys.argv[sys.argv.index("--") + 1:]
    threading.Thread(target=_dump_loop, args=(out, every), daemon=True, name="tracemalloc-dump").start()
    sys.argv = ["crowdsafe", *rest]
    runpy.run_module("crowdsafe.cli.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
