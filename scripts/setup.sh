#!/usr/bin/env bash
# Quick start, command 1: venv + crowdsafe + verified weights, then the live demo site and its dashboard
# (`crowdsafe demo`: until Ctrl-C; arguments go to it, e.g. --duration 60 or --port 0).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv "[openvino]"
echo "== running the demo"
exec "$VENV/bin/crowdsafe" demo "$@"
