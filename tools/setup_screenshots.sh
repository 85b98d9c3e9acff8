#!/usr/bin/env bash
# The docs' screencast of the Setup page (docs/setup/*.png, 1920x1080): the screenshots the browser
# test tests/dashboard/test_setup_page.py takes while it sets the demo camera up from nothing,
# reduced to 256-colour PNGs so the manual stays small. The picture shown is the camera's
# people-free background (the temporal median of 25 frames spread over the sample video, as the
# test's server has it), never a frame with people in it.
#   bash tools/setup_screenshots.sh        (from the repository root; CROWDSAFE_VENV selects the venv)
set -euo pipefail
VENV=${CROWDSAFE_VENV:-.venv}
out=docs/setup
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CROWDSAFE_SETUP_SHOTS="$tmp" "$VENV/bin/python" -m pytest -q -x tests/dashboard/test_setup_page.py \
  -k set_up_from_nothing
rm -f "$out"/setup-*.png "$out"/setup-*.jpg
mkdir -p "$out"
"$VENV/bin/python" - "$tmp" "$out" <<'PY'
import sys
from pathlib import Path

from PIL import Image

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(src.glob("setup-*.png")):
    image = Image.open(path).convert("RGB")
    assert image.size == (1920, 1080), (path, image.size)
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        dst / path.name, optimize=True)
    print(dst / path.name)
PY
