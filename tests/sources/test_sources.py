"""Frame sources on real media: images, folders, the bundled video, a corrupted video."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsafe.sources import SourceError, open_source, parse_interval
from crowdsafe.sources import video as video_module
from crowdsafe.sources.images import jpeg_is_truncated, natural_key, read_image
from crowdsafe.sources.sampling import FramePlan, IntervalError
from tests.support.media import CORRUPT_FRAMES, VIDEO_FPS

# --- intervals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("500ms", 0.5), ("2", 2.0), ("0.5s", 0.5), ("1m", 60.0), (" 1.5 min ", 90.0),
    ("2h", 7200.0), (".25s", 0.25), ("20S", 20.0),
])
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "1x", "-1s", "0", "0ms", "1 s s", "1e3"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(IntervalError, match="interval"):
        parse_interval(text)


def _sample(plan: FramePlan, timestamps: list[float]) -> list[int]:
    """What a reader following ``plan`` counts from frames at these times."""
    taken, target = [], 0.0
    for index, timestamp in enumerate(timestamps):
        if plan.is_due(timestamp, target):
            taken.append(index)
            target = plan.next_target(timestamp)
    return taken


def test_frame_plan_targets_do_not_drift() -> None:
    """Every 1/3 s at 10 fps for an hour: exactly the first frame at or after each k/3 s."""
    taken = _sample(FramePlan(every=1 / 3), [i / 10 for i in range(36_000)])
    assert taken[:5] == [0, 4, 7, 10, 14]
    assert taken == [math.ceil(k * 10 / 3 - 1e-9) for k in range(len(taken))]
    assert FramePlan(every=1 / 3).expected(36_000, 10.0) == len(taken)
    assert FramePlan(every=20).expected(795, 10.0) == 4
    assert FramePlan(every=None).expected(795, 10.0) == 795
    assert FramePlan(every=0.01).expected(100, 25.0) == 100  # finer than the frame rate


def test_frame_plan_follows_variable_frame_rate() -> None:
    """Phone videos: irregular frame times, samples still land on the whole seconds."""
    times = [0.0, 0.03, 0.09, 0.5, 0.98, 1.01, 1.4, 2.2, 2.25, 3.0]
    taken = _sample(FramePlan(every=1.0), times)
    assert [times[i] for i in taken] == [0.0, 1.01, 2.2, 3.0]
    assert _sample(FramePlan(every=None), times) == list(range(len(times)))


# --- still images ------------------------------------------------------------------------


def test_natural_order() -> None:
    names = ["img10.jpg", "img2.jpg", "IMG_1.jpg", "img1.jpg", "a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "img1.jpg", "img2.jpg", "img10.jpg",
                                              "IMG_1.jpg"]


def test_jpeg_truncation_check_on_real_jpeg(mall_jpeg: Path) -> None:
    data = mall_jpeg.read_bytes()
    assert not jpeg_is_truncated(data)
    assert not jpeg_is_truncated(data + b"\x00" * 64 + b"camera trailer")  # appended data is ok
    for cut in (len(data) // 2, len(data) - 2, 700):
        assert jpeg_is_truncated(data[:cut]), cut


def test_single_image(crop_jpeg: Path) -> None:
    source = open_source(crop_jpeg)
    frames = list(source)
    assert len(frames) == 1 and source.expected == 1
    frame = frames[0]
    assert (frame.source, frame.index, frame.timestamp) == ("crop.jpg", 0, None)
    np.testing.assert_array_equal(frame.image, cv2.imread(str(crop_jpeg)))


def test_grayscale_image_becomes_bgr(tmp_path: Path, mall_jpeg: Path) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), cv2.imread(str(mall_jpeg), cv2.IMREAD_GRAYSCALE))
    assert read_image(path).shape == (480, 640, 3)


@pytest.fixture
def mixed_folder(tmp_path: Path, crop_jpeg: Path, truncated_jpeg: Path) -> Path:
    """Good images in an order where text sorting and natural sorting differ, plus junk."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("frame10.jpg", "frame2.jpg"):
        (folder / name).write_bytes(crop_jpeg.read_bytes())
    (folder / "frame3.jpg").write_bytes(truncated_jpeg.read_bytes())
    (folder / "frame4.png").write_bytes(b"this is not a png")
    (folder / "labels.json").write_text("{}")
    (folder / "README.md").write_text("not an image, ignored")
    (folder / "sub").mkdir()
    return folder


def test_folder_skips_and_reports_bad_images(mixed_folder: Path) -> None:
    source = open_source(mixed_folder)
    assert source.expected == 4
    frames = list(source)
    assert [(f.source, f.index) for f in frames] == [("frame2.jpg", 0), ("frame10.jpg", 3)]
    assert [(s.source, s.index) for s in source.skipped] == [("frame3.jpg", 1),
                                                            ("frame4.png", 2)]
    assert "truncated JPEG" in source.skipped[0].reason
    assert "not an image OpenCV can decode" in source.skipped[1].reason


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p, "no such file or folder"),
    (lambda p: (p.write_bytes(b""), p)[1], r"empty \(0 bytes\)"),
    (lambda p: (p.with_suffix(".txt").write_text("hello\n" * 50), p.with_suffix(".txt"))[1],
     "not an image or a video file"),
    (lambda p: (p.with_suffix(".avi").write_text("hello\n" * 50), p.with_suffix(".avi"))[1],
     "not a video OpenCV can open"),
    (lambda p: (p.with_suffix(".jpg").write_text("hello\n" * 50), p.with_suffix(".jpg"))[1],
     "not an image OpenCV can decode"),
    (lambda p: (p.mkdir(), p)[1], "no image files in this folder"),
])
def test_unusable_sources_raise_clear_errors(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "input")
    with pytest.raises(SourceError, match=message):
        list(open_source(path))


def test_truncated_jpeg_alone_is_an_error(truncated_jpeg: Path) -> None:
    with pytest.raises(SourceError, match="truncated JPEG"):
        list(open_source(truncated_jpeg))


# --- video -------------------------------------------------------------------------------


_RealCapture = cv2.VideoCapture
CALLS = {"grab": 0, "retrieve": 0, "read": 0}


class _SpyCapture:
    """Counts how frames are pulled, to prove skipped frames are grabbed, not decoded+dropped.

    A wrapper, not a subclass: subclassing cv2.VideoCapture crashes OpenCV's bindings.
    """

    def __init__(self, *args: object) -> None:
        self._cap = _RealCapture(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._cap, name)

    def grab(self) -> bool:
        CALLS["grab"] += 1
        return self._cap.grab()

    def retrieve(self, *args: object) -> tuple[bool, np.ndarray]:
        CALLS["retrieve"] += 1
        return self._cap.retrieve(*args)

    def read(self, *args: object) -> tuple[bool, np.ndarray]:
        CALLS["read"] += 1
        return self._cap.read(*args)


def test_video_sampling_grabs_and_only_retrieves_counted_frames(
        bundled_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = CALLS
    monkeypatch.setitem(CALLS, "grab", 0)
    monkeypatch.setitem(CALLS, "retrieve", 0)
    monkeypatch.setitem(CALLS, "read", 0)
    monkeypatch.setattr(video_module.cv2, "VideoCapture", _SpyCapture)
    source = open_source(bundled_video, every=parse_interval("20s"))
    frames = list(source)
    assert source.expected == 4
    assert [f.index for f in frames] == [0, 200, 400, 600]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 20.0, 40.0, 60.0])
    assert all(f.image.shape == (576, 768, 3) for f in frames)
    assert calls["retrieve"] == 4 and calls["read"] == 0
    assert calls["grab"] >= 795
    assert source.skipped == []


def test_video_every_frame_has_consistent_timestamps(corrupt_video: Path) -> None:
    frames = list(open_source(corrupt_video))
    assert all(f.timestamp == pytest.approx(f.index / VIDEO_FPS) for f in frames)


def test_corrupt_video_frames_are_skipped_and_reported(corrupt_video: Path) -> None:
    source = open_source(corrupt_video)
    frames = list(source)
    good = [i for i in range(12) if i not in CORRUPT_FRAMES]
    assert [f.index for f in frames] == good
    assert [(s.index, s.reason.split(":")[0]) for s in source.skipped] == [(4, "frame 4-5")]
    assert "could not be decoded" in source.skipped[0].reason
    # Frames after the damage keep their true timestamps, not shifted by the lost ones.
    assert frames[4].index == 6 and frames[4].timestamp == pytest.approx(0.6)


def test_corrupt_target_frame_is_replaced_by_next_good_one(corrupt_video: Path) -> None:
    frames = list(open_source(corrupt_video, every=0.4))
    assert [f.index for f in frames] == [0, 6, 8]  # 4 (0.4 s) is corrupt -> 6 (0.6 s)


def test_every_is_ignored_for_images(crop_jpeg: Path) -> None:
    # --every on an image is not an error: the source ignores it and yields the image.
    assert len(list(open_source(crop_jpeg, every=1.0))) == 1
