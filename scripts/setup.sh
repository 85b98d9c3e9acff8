#!/usr/bin/env bash
# Quick start, command 1: venv + crowdsafe + verified weights, then the demo on the bundled video.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv "[openvino]"
echo "== running the demo"
exec "$VENV/bin/crowdsafe" demo "$@"
