"""What a long-running site keeps per skipped frame is bounded, and frame numbers survive bad data.

A runner loops the same file or reads a stream for weeks, so anything a source appends per bad
frame is a leak that only shows after hours (issue 9's soak). These tests drive the real sources
over real broken input many times and check the bookkeeping stays the same size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from crowdsafe.runtime.camera import CameraReader, CameraSource
from crowdsafe.runtime.slots import LatestSlots
from crowdsafe.sources.frames import SKIP_LOG_SIZE, SkipLog, SkippedFrame
from crowdsafe.sources.looping import LoopingVideoSource, PacedImagesSource
from tests.support.media import CORRUPT_FRAMES


def test_skip_log_keeps_the_total_and_only_the_last_reasons() -> None:
    log = SkipLog(maxlen=5)
    for i in range(1000):
        log.append(SkippedFrame("cam", i, f"bad {i}"))
    assert log.total == 1000
    assert len(log) == 5 and [s.index for s in log] == [995, 996, 997, 998, 999]
    assert log[-1].reason == "bad 999"
    assert SkipLog().maxlen == SKIP_LOG_SIZE
    assert SkipLog() == [] and log == [SkippedFrame("cam", i, f"bad {i}") for i in range(995, 1000)]


def test_looped_folder_with_a_broken_image_keeps_bounded_skips(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    (tmp_path / "b.png").write_bytes(b"not an image at all")
    source = PacedImagesSource(sorted(tmp_path.iterdir()), every=0.0, loop=True, name="snap")
    passes = SKIP_LOG_SIZE + 500  # one skip per pass: more than the log keeps
    indices = []
    for frame in source:
        indices.append(frame.index)
        if len(indices) == passes:
            source.stop()
    assert indices == list(range(passes))  # good images are numbered without gaps
    assert source.skipped.total >= passes - 1
    assert len(source.skipped) == SKIP_LOG_SIZE
    assert source.skipped[-1].source == "b.png"


def test_camera_health_counts_every_skip_not_just_the_kept_ones(tmp_path: Path) -> None:
    # The health row's error count must keep rising after the log is full.
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    (tmp_path / "b.png").write_bytes(b"broken")
    source = PacedImagesSource(sorted(tmp_path.iterdir()), every=0.0, loop=True, name="snap")
    for frame in source:
        if frame.index >= SKIP_LOG_SIZE + 200:
            source.stop()
    assert source.skipped.total > SKIP_LOG_SIZE
    cam = CameraSource("snap", source, every=1.0, pairs=False, size=(8, 8))
    health = CameraReader(cam, LatestSlots()).health()  # not started: only the source's skips
    assert health.errors == source.skipped.total
    assert "b.png" in health.message()


def test_looping_video_keeps_frame_numbers_after_corrupt_frames(corrupt_video: Path) -> None:
    source = LoopingVideoSource(corrupt_video, loop=True)
    seen: list[int] = []
    for grab in source.grabs():
        seen.append(grab.index)
        if len(seen) == 20:  # two passes of the 10 good frames
            source.stop()
    good = [i for i in range(12) if i not in CORRUPT_FRAMES]
    assert seen == good + good  # frame 6 is still frame 6 after the bad patch, on every loop
    assert [s.index for s in source.skipped] == [CORRUPT_FRAMES[0]] * 2
    assert source.corrupt_frames == 2 * len(CORRUPT_FRAMES)
    assert source.skipped.total == 2
