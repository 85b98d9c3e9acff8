"""The background model removes people: checked against the video's annotated foot points."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsafe.measure.background import BackgroundModel, encode_jpeg, largest_blob, unsettled

VIDEO = str(resources.files("crowdsafe") / "data" / "vtest.avi")
POINTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "video" / "vtest_points.json"


def read(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(VIDEO)
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


@pytest.fixture(scope="module")
def model() -> BackgroundModel:
    bg = BackgroundModel(size=15, max_side=768)
    for i in range(0, 795, 53):
        bg.add(read(i))
    return bg


@pytest.mark.skipif(not POINTS.is_file(), reason=f"ground-truth foot points not found at {POINTS}")
def test_median_removes_the_annotated_people(model):
    median = model.median()
    assert median is not None and median.shape == (576, 768, 3)
    truth = json.loads(POINTS.read_text())
    present, absent = 0, 0
    for k in (130, 390, 650):  # frames not used to build the median
        frame = read(k)
        diff = cv2.absdiff(frame, median).max(axis=2)
        for x, y in truth[str(k)]["points"]:
            # the body is just above the foot point: look at a small window there
            y0, y1 = max(int(y) - 40, 0), max(int(y) - 5, 1)
            x0, x1 = max(int(x) - 6, 0), int(x) + 6
            if (diff[y0:y1, x0:x1] > 40).mean() > 0.2:
                present += 1
            else:
                absent += 1
    assert present / (present + absent) >= 0.8, f"{present} people differ from background, {absent} do not"


def test_not_ready_until_enough_frames_and_never_full_resolution():
    bg = BackgroundModel(size=5, max_side=320, min_frames=3)
    bg.add(read(0))
    bg.add(read(100))
    assert bg.median() is None
    bg.add(read(200))
    assert bg.median().shape == (240, 320, 3)
    assert encode_jpeg(bg.median())[:2] == b"\xff\xd8"


def test_unsettled_flags_where_a_person_could_be_in_the_median():
    """A dark 'person' on the same spot in 11 of 20 real frames is in their median; most frames
    disagree with it there, so the spot is unsettled. On a spot crossed in 4 of 20 frames the
    median shows the ground and 16 frames agree: settled."""
    ground = cv2.resize(read(0), (320, 240), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(20):
        f = ground.copy()
        if k < 11:
            f[100:140, 50:62] = 20  # stands in more than half of the frames
        if k % 5 == 0:
            f[100:140, 200:212] = 20  # passes now and then
        frames.append(f)
    median = np.median(np.stack(frames), axis=0).astype(np.uint8)
    assert median[120, 56].max() < 40  # the standing 'person' is in the median ...
    mask = unsettled(frames, median)
    assert mask[105:135, 52:60].all()  # ... and flagged
    assert not mask[105:135, 202:210].any() and not mask[10:60, 10:300].any()
    assert largest_blob(mask) >= 40 * 12 * 0.8
    later = frames[11:]  # after the 'person' left: settled everywhere
    assert largest_blob(unsettled(later, np.median(np.stack(later), axis=0).astype(np.uint8))) == 0
