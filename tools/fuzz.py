"""Run the fuzzing tests with many generated cases and print exactly how many ran and how many failed.

CI runs tests/config/test_fuzz_site.py and tests/api/test_fuzz_api.py with a few derandomised cases per
property (seconds). This runs the same properties with ``--cases`` random cases each, in one
pytest process, and sums the case counts the properties themselves recorded (tests/support/fuzzing.py),
so the totals are what ran, not what was asked for (hypothesis stops early on a property whose
input space is small, e.g. an endpoint without parameters).

    .venv/bin/python tools/fuzz.py --cases 400            # ~13,000 cases, a few minutes on 2 cores
    .venv/bin/python tools/fuzz.py --cases 50 --only site

Exit status: 0 if no property failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"site": "tests/config/test_fuzz_site.py", "api": "tests/api/test_fuzz_api.py"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=400, help="max generated cases per property")
    parser.add_argument("--only", choices=sorted(TESTS), help="run only the site or the API fuzzing")
    parser.add_argument("--json", type=Path, help="also write the totals here")
    args = parser.parse_args()
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    with tempfile.TemporaryDirectory(prefix="crowdsafe-fuzz-") as tmp:
        report = Path(tmp) / "cases.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "CROWDSAFE_FUZZ_CASES": str(args.cases), "CROWDSAFE_FUZZ_REPORT": str(report)}
        targets = [TESTS[args.only]] if args.only else list(TESTS.values())
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider",
                               f"--junitxml={junit}", "-o", "addopts="], cwd=ROOT, env=env)
        seconds = time.monotonic() - started
        rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
        tests, failures = _junit(junit)
    total = sum(r["cases"] for r in rows)
    width = max((len(r["name"]) for r in rows), default=10)
    print(f"\n{'property':<{width}}  cases  result")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['cases']:>5}  {'FAILED' if r['failed'] else 'ok'}")
    print(f"\n{total} generated cases in {seconds:.0f} s; pytest: {tests} tests, {failures} failed "
          f"(--cases {args.cases})")
    if args.json:
        args.json.write_text(json.dumps({"cases_per_property": args.cases, "total_cases": total,
                                         "tests": tests, "failed_tests": failures, "seconds": round(seconds),
                                         "properties": rows}, indent=2) + "\n")
    return 0 if proc.returncode == 0 and failures == 0 else 1


def _junit(path: Path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    suite = ET.parse(path).getroot()
    suites = [suite] if suite.tag == "testsuite" else list(suite)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    return tests, failed


if __name__ == "__main__":
    sys.exit(main())
