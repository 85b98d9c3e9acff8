#!/usr/bin/env bash
# Quick start, command 2: the whole test suite (lint + tests), from a clean clone or an existing venv.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# Real servers the tests start on 127.0.0.1: PostgreSQL for the store, GStreamer's RTSP server for streams.
ensure_system_packages chromium postgresql python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
  gstreamer1.0-libav
ensure_venv "[dev]"
# JuPedSim's simulation core for the clearance what-if tests, without the PySide6 + VTK (~1.2 GB)
# its wheel declares for a GUI: it imports only numpy, shapely and Deprecated.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "deprecated~=1.2.18"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "jupedsim>=1.2,<2"
cd "$ROOT"
echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== docs (mkdocs build --strict: a broken link or a failing generated page fails)"
site_dir="$(mktemp -d)"
DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict -q -d "$site_dir"
rm -rf "$site_dir"
echo "== pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
[ "$rc" = 5 ] && { echo "pytest collected no tests: failing" >&2; exit 1; }
exit "$rc"
