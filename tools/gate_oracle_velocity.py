"""Diagnosis only: east_gate's band estimate with exact heads, read with the pipeline's optical flow
or with the annotated head velocity (issue 25), to split the under-read between velocity and band.

    python tools/gate_oracle_velocity.py ../shared/data/video/vtest_heads.json 10 oracle
    python tools/gate_oracle_velocity.py ../shared/data/video/vtest_heads.json 10 flow

Both run ``FramePipeline`` on the demo site with the annotated heads as the density (as
``crowdsafe eval-site --density-from``). "oracle" replaces the optical flow by a field giving
every pixel the annotated velocity of the nearest head (matched to the next frame, at most 25 px
away; zero beyond 60 px) and reads it at the head itself (no body-motion step); "flow" is the
pipeline unchanged. The annotations are ground truth for diagnosis; nothing is fitted to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from crowdsafe.cli.demo import demo_site_file
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import EveryCamera
from crowdsafe.evaluation.site import PointsCounter, load_frame_points, read_pairs, truth_crossings
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import optical_flow
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import as_plan

CAMERA = "view001"


def main(heads_path: Path, step: int, mode: str) -> None:
    heads = load_frame_points(heads_path)
    site = load_site(demo_site_file())
    geometry = build_site_geometry(site)
    current = {"k": 0}

    def oracle(image: np.ndarray, pair: np.ndarray, dt: float) -> np.ndarray:
        h, w = image.shape[:2]
        field = np.zeros((h, w, 2), np.float32)
        a, b = heads.get(current["k"]), heads.get(current["k"] + 1)
        if a is None or b is None or len(a) == 0 or len(b) == 0:
            return field
        dist = np.hypot(*(a[:, None, :] - b[None, :, :]).transpose(2, 0, 1))
        used: dict[int, int] = {}
        for flat in np.argsort(dist, axis=None):
            i, j = divmod(int(flat), dist.shape[1])
            if dist[i, j] > 25:
                break
            if i not in used and j not in used.values():
                used[i] = j
        yy, xx = np.mgrid[0:h, 0:w]
        best = np.full((h, w), np.inf)
        for i, j in used.items():
            d2 = (xx - a[i][0]) ** 2 + (yy - a[i][1]) ** 2
            nearer = d2 < best
            best = np.where(nearer, d2, best)
            field[nearer] = (b[j] - a[i]) / dt
        field[best > 60**2] = 0
        return field

    counter = PointsCounter(heads)
    pipe = FramePipeline(as_plan(geometry, {}), EveryCamera(counter),
                         flow=oracle if mode == "oracle" else optical_flow)
    if mode == "oracle":
        pipe._bodies[CAMERA] = None  # read the velocity at the head itself
    frames = range(0, 795, step)
    totals = {ln.id: [0.0, 0.0] for ln in geometry.site.lines}
    for index, image, pair, fps in read_pairs(site.resolve_source(site.camera(CAMERA)), frames):
        current["k"] = counter.frame = index
        out = pipe.process(Sample(CAMERA, ts=index / fps, image=image, pair=pair,
                                  pair_dt=1.0 / fps if pair is not None else None, frame_index=index))
        for row in out.line_rows:
            totals[str(row["line_id"])][0] += float(row["in_count"])  # type: ignore[arg-type]
            totals[str(row["line_id"])][1] += float(row["out_count"])  # type: ignore[arg-type]
    feet = load_frame_points(heads_path.with_name("vtest_points.json"))
    truth = truth_crossings(geometry, CAMERA, feet, frames)
    for lid, (m_in, m_out) in totals.items():
        print(f"{mode} every {step}th frame, {lid}: in {m_in:.2f}/{truth[lid]['truth_in']} "
              f"out {m_out:.2f}/{truth[lid]['truth_out']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
