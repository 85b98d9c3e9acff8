"""The image velocity's speed against annotated heads on the bundled sample clip (issue 25).

The gate counts are density x velocity, so these pin down what the pipeline's optical flow reads
on the small slow walkers of the sample video, and the video's frame timing, as measured by
``tools/flow_speed_ratio.py`` (docs/sites.md, Gates)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsafe.evaluation.flow_speed import dropped_frame_pairs, followed_flow, speed_ratio
from crowdsafe.evaluation.site import load_frame_points, match_points, read_pairs
from crowdsafe.measure.flow import optical_flow


@pytest.fixture(scope="module")
def heads(shared_data: Path) -> dict[int, np.ndarray]:
    path = shared_data / "video" / "vtest_heads.json"
    if not path.exists():
        pytest.skip(f"annotated heads of the sample video not found at {path}")
    return load_frame_points(path)


def test_one_pair_a_second_reads_under_the_heads_speed(heads):
    """The pipeline's flow over one pair at every 10th frame (a live sample a second) reads about
    three quarters of the annotated heads' speed (0.763 measured; 0.753 with the medium DIS preset
    before issue 29): the under-read of east_gate.
    A change to the flow that moves this moves the gates; docs/sites.md has to follow."""
    video = str(resources.files("crowdsafe") / "data" / "vtest.avi")
    flows: dict[int, np.ndarray] = {}

    def starts() -> Iterator[int]:  # one flow in memory at a time
        for k, image, pair, _ in read_pairs(video, range(0, 790, 10)):
            flows[k] = optical_flow(image, pair, 1.0)
            yield k

    r = speed_ratio(heads, starts(), flows.pop)
    assert r.heads >= 300
    assert 0.65 <= r.slope <= 0.85, r


def texture_clip(steps: list[int]) -> list[np.ndarray]:
    """Frames of a blurred noise texture moving left by ``steps`` px from frame to frame."""
    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (120, 400), dtype=np.uint8),
                               (0, 0), 4.0)
    xs = np.concatenate([[0], np.cumsum(steps)]).astype(int)
    return [cv2.cvtColor(np.ascontiguousarray(texture[:, x:x + 200]), cv2.COLOR_GRAY2BGR) for x in xs]


def test_dropped_frames_are_found_in_a_video_that_drops_some():
    """Every 4th step doubled, as when the camera dropped a frame."""
    steps = [6 if k % 4 == 3 else 3 for k in range(23)]
    assert dropped_frame_pairs(texture_clip(steps)).tolist() == [s == 6 for s in steps]


@pytest.mark.parametrize(("steps", "expected"), [
    ([3, 3, 3], 3.0),  # a steady motion, followed: the same as one pair
    ([3, 6, 3], 4.0),  # a dropped frame inside the span counts in proportion
])
def test_followed_flow_reads_the_mean_motion_over_its_span(steps, expected):
    clip = texture_clip(steps)
    moved = followed_flow(clip, lambda a, b: optical_flow(a, b, 1.0))
    # Texture moving left by s px: content at x comes from x + s, so the flow reads -s.
    assert float(np.median(moved[30:90, 30:120, 0])) == pytest.approx(-expected, abs=0.3)
    assert float(np.median(moved[30:90, 30:120, 1])) == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize(("a", "b", "gate", "expected"), [
    ([[0, 0], [10, 0]], [[11, 0], [1, 0]], 5.0, {0: 1, 1: 0}),  # nearest first, one to one
    ([[0, 0], [1, 0]], [[0.5, 0]], 5.0, {0: 0}),  # a point of b is taken once
    ([[0, 0]], [[9, 0]], 5.0, {}),  # beyond the gate
    ([], [[0, 0]], 5.0, {}),
])
def test_match_points(a, b, gate, expected):
    before, after = np.array(a, float).reshape(-1, 2), np.array(b, float).reshape(-1, 2)
    assert match_points(before, after, gate) == expected
