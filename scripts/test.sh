#!/usr/bin/env bash
# Quick start, command 2: the whole test suite (lint + tests), from a clean clone or an existing venv.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_system_packages postgresql   # real PostgreSQL server for the store tests
ensure_venv "[dev]"
cd "$ROOT"
echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
[ "$rc" = 5 ] && { echo "pytest collected no tests: failing" >&2; exit 1; }
exit "$rc"
