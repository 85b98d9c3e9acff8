"""Diagnosis only: east_gate's band estimate with exact heads, read with the pipeline's optical flow
or with the annotated head velocity (issue 25), to split the under-read between velocity and band.

    python tools/gate_oracle_velocity.py ../shared/data/video/vtest_heads.json 10 oracle
    python tools/gate_oracle_velocity.py ../shared/data/video/vtest_heads.json 10 flow
    python tools/gate_oracle_velocity.py ../shared/data/video/vtest_heads.json 10 followed3

Both run ``FramePipeline`` on the demo site with the annotated heads as the density (as
``crowdsafe eval-site --density-from``). "oracle" replaces the optical flow by a field giving
every pixel the annotated velocity of the nearest head (matched to the next frame, at most 25 px
away; zero beyond 60 px) and reads it at the head itself (no body-motion step); "flow" is the
pipeline unchanged. Other velocities, each read as the pipeline reads the flow: "followed3", each
pixel followed through the next 3 one-frame flows (``evaluation.flow_speed.followed_flow``: a span
that includes the video's dropped frames in proportion); "pairs3", the mean of the next 3 pairs'
flows at the same pixels; "span3", one flow from frame k to k + 3, divided by 3; "spread15", the
flow of moving pixels (over 1 px a frame) spread over 15 px (``optical_flow(spread_px=15)``). The
annotations are ground truth for diagnosis; nothing is fitted to them.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.cli.demo import demo_site_file
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import EveryCamera
from crowdsafe.evaluation.flow_speed import followed_flow
from crowdsafe.evaluation.site import (
    PointsCounter,
    load_frame_points,
    match_points,
    read_pairs,
    truth_crossings,
)
from crowdsafe.geometry.site import build_site_geometry
from crowdsafe.measure.flow import optical_flow
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FramePipeline
from crowdsafe.runtime.plan import as_plan

CAMERA = "view001"
SPANNED = ("followed3", "pairs3", "span3")


def following_frames(path: str, frames: range, count: int) -> dict[int, np.ndarray]:
    """The ``count`` frames after each of ``frames``, by index (only those: the clip is long)."""
    wanted = {k + j for k in frames for j in range(1, count + 1)}
    cap = cv2.VideoCapture(path)
    out: dict[int, np.ndarray] = {}
    index = 0
    while index <= max(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            out[index] = frame
        index += 1
    cap.release()
    return out


def head_velocity_field(a: np.ndarray | None, b: np.ndarray | None, shape: tuple[int, ...],
                        dt: float) -> np.ndarray:
    """The "oracle" velocity (H, W, 2) px/s: each pixel within 60 px of an annotated head in ``a``
    gets the motion of its nearest head to its match in ``b`` (zero elsewhere, or without a pair)."""
    h, w = shape[:2]
    field = np.zeros((h, w, 2), np.float32)
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return field
    yy, xx = np.mgrid[0:h, 0:w]
    best = np.full((h, w), np.inf)
    for i, j in match_points(a, b, 25.0).items():
        d2 = (xx - a[i][0]) ** 2 + (yy - a[i][1]) ** 2
        nearer = d2 < best
        best = np.where(nearer, d2, best)
        field[nearer] = (b[j] - a[i]) / dt
    field[best > 60**2] = 0
    return field


def main(heads_path: Path, step: int, mode: str) -> None:
    heads = load_frame_points(heads_path)
    site = load_site(demo_site_file())
    geometry = build_site_geometry(site)
    current = {"k": 0}

    def oracle(image: np.ndarray, pair: np.ndarray, dt: float) -> np.ndarray:
        return head_velocity_field(heads.get(current["k"]), heads.get(current["k"] + 1), image.shape[:2], dt)

    frames = range(0, 795, step)
    later = following_frames(site.resolve_source(site.camera(CAMERA)), frames, 3) if mode in SPANNED else {}

    def spanned(image: np.ndarray, pair: np.ndarray, dt: float) -> np.ndarray:
        k = current["k"]
        clip = [image] + [later[k + j] for j in (1, 2, 3) if k + j in later]
        if len(clip) < 4:
            return optical_flow(image, pair, dt)
        if mode == "followed3":
            return followed_flow(clip, lambda a, b: optical_flow(a, b, 1.0)) / dt  # px a frame to px/s
        if mode == "pairs3":
            return np.mean([optical_flow(a, b, dt) for a, b in itertools.pairwise(clip)], axis=0)
        return optical_flow(clip[0], clip[3], 3 * dt)  # span3

    flows = {"oracle": oracle, "flow": optical_flow,
             "spread15": lambda a, b, dt: optical_flow(a, b, dt, spread_px=15.0, moving_px=1.0)}
    counter = PointsCounter(heads)
    pipe = FramePipeline(as_plan(geometry, {}), EveryCamera(counter), flow=flows.get(mode, spanned))
    if mode == "oracle":
        pipe._bodies[CAMERA] = None  # read the velocity at the head itself
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
