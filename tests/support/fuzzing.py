"""Shared knobs of the fuzzing tests: how many cases, and where the counts are reported.

CI runs a small, derandomised number of cases per property (fast, and the same cases every run,
so a red build is reproducible). ``tools/fuzz.py`` sets ``CROWDSAFE_FUZZ_CASES`` to run many
random ones and ``CROWDSAFE_FUZZ_REPORT`` to a file where every property appends one JSON line
with the number of cases it executed and whether it failed, so the totals are counted, not guessed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

CI_CASES = 150


def cases(ci_default: int = CI_CASES) -> int:
    return int(os.environ.get("CROWDSAFE_FUZZ_CASES", ci_default))


def fuzz_settings(ci_default: int = CI_CASES) -> settings:
    """Hypothesis settings: no example database (nothing written into the checkout), no deadline
    (2 shared cores make timings noisy; hangs are caught by explicit timeouts instead)."""
    many = "CROWDSAFE_FUZZ_CASES" in os.environ
    return settings(max_examples=cases(ci_default), deadline=None, database=None, derandomize=not many,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@dataclass
class Tally:
    name: str
    cases: int = 0


@contextmanager
def tally(name: str) -> Iterator[Tally]:
    """Counts the cases a property ran; appends {name, cases, failed, seconds} to the report file."""
    counter = Tally(name)
    started = time.monotonic()
    failed = True
    try:
        yield counter
        failed = False
    finally:
        report = os.environ.get("CROWDSAFE_FUZZ_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"name": name, "cases": counter.cases, "failed": failed,
                                     "seconds": round(time.monotonic() - started, 1)}) + "\n")
