"""Write the demo's annotated gate crossings (data/vtest_gate_crossings.csv) from foot points.

    python tools/gate_crossings.py ../shared/data/video/vtest_points.json \
        src/crowdsafe/data/vtest_gate_crossings.csv

One row per annotated crossing of a demo site line between frame k and k + 1 (the same matching
as ``crowdsafe eval-site``'s line truth): only the frame, the line and the direction, no points.
"""

from __future__ import annotations

import sys
from pathlib import Path

from crowdsafe.cli.demo import demo_site_file
from crowdsafe.config.site import load_site
from crowdsafe.evaluation.site import load_frame_points, truth_crossings
from crowdsafe.geometry.site import build_site_geometry


def main(points: Path, out: Path) -> None:
    geometry = build_site_geometry(load_site(demo_site_file()))
    feet = load_frame_points(points)
    rows = ["frame,line_id,direction"]
    for k in sorted(feet):
        if k + 1 not in feet:
            continue
        counts = truth_crossings(geometry, "view001", feet, range(k, k + 2))
        for lid, c in counts.items():
            rows += [f"{k},{lid},in"] * int(c["truth_in"]) + [f"{k},{lid},out"] * int(c["truth_out"])
    out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
