"""``crowdsafe count`` end to end on real images and videos, and on every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsafe.cli.main import app
from crowdsafe.counting.batch import LazyCounter, run_count
from crowdsafe.counting.counter import DensityCounter
from crowdsafe.sources import open_source
from tests.support.counting import uses
from tests.support.media import CORRUPT_FRAMES

runner = CliRunner()


def invoke(*args: str | Path, counter: DensityCounter | None = None):
    """``crowdsafe count ARGS``; with ``counter``, the command counts with it instead of an engine."""
    obj = uses(counter) if counter is not None else None
    result = runner.invoke(app, ["count", *map(str, args)], obj=obj)
    assert "Traceback" not in result.output, result.output
    return result


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, a message naming the problem, and no exception escaping."""
    message = " ".join(result.stderr.split())  # rich wraps long lines at 80 columns
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert message.startswith("error:"), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def crop_count(crop_jpeg: Path, counter: DensityCounter) -> float:
    return counter.count(cv2.imread(str(crop_jpeg))).count


@pytest.fixture(scope="module")
def crop_interval(crop_jpeg: Path, counter: DensityCounter) -> tuple[float | None, float | None]:
    """The 90 % interval the dense model reports for the crop, rounded as the command does."""
    interval = counter.count(cv2.imread(str(crop_jpeg))).interval
    return (None, None) if interval is None else (round(interval[0], 1), round(interval[1], 1))


# --- real images -------------------------------------------------------------------------


def test_count_image_table_with_real_engine(crop_jpeg: Path, crop_count: float) -> None:
    """No shared counter here: the command builds its own engine, as a user's run does, in the
    precision ``demo`` runs (int8, said on stderr), within int8's drift of the fp32 count."""
    result = invoke(crop_jpeg)
    assert result.exit_code == 0, result.output
    assert "crop.jpg" in result.stdout
    assert "precision int8" in result.stderr
    [row] = [line for line in result.stdout.splitlines() if "crop.jpg" in line and "│" in line]
    counts = [float(cell) for cell in row.split("│") if cell.strip().replace(".", "", 1).isdigit()]
    assert any(abs(c - crop_count) <= 0.03 * crop_count for c in counts), (row, crop_count)
    assert "1 frame(s) counted" in result.stderr


def test_count_image_json(crop_jpeg: Path, crop_count: float, crop_interval: tuple,
                          shared_counter: object) -> None:
    result = invoke(crop_jpeg, "--format", "json", counter=shared_counter)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "crop.jpg" and data["precision"] == "fp32"
    assert data["engine"] in ("openvino", "onnxruntime")
    assert data["frames"] == [{"source": "crop.jpg", "frame": 0, "time_s": None,
                               "count": round(crop_count, 1), "lo90": crop_interval[0],
                               "hi90": crop_interval[1], "model": "dense"}]
    assert data["summary"]["frames"] == 1 and data["skipped"] == []
    assert data["summary"]["mean_count"] == round(crop_count, 1)
    assert 3 < crop_count < 40  # a 256 px crop of a 26-41 person mall frame


def test_count_image_csv_to_file(tmp_path: Path, crop_jpeg: Path, crop_count: float,
                                 crop_interval: tuple, shared_counter: object) -> None:
    out = tmp_path / "counts.csv"
    result = invoke(crop_jpeg, "--output", out, counter=shared_counter)  # format inferred from the extension
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    lo, hi = ("" if v is None else str(v) for v in crop_interval)
    assert rows == [{"source": "crop.jpg", "frame": "0", "time_s": "",
                     "count": str(round(crop_count, 1)), "lo90": lo, "hi90": hi, "model": "dense"}]


def test_heatmap_written_for_real_image(tmp_path: Path, crop_jpeg: Path,
                                        shared_counter: object) -> None:
    maps = tmp_path / "maps"
    result = invoke(crop_jpeg, "--heatmaps", maps, "-f", "csv", counter=shared_counter)
    assert result.exit_code == 0, result.output
    files = sorted(maps.iterdir())
    assert [f.name for f in files] == ["crop_heatmap.jpg"]
    heatmap = cv2.imread(str(files[0]))
    assert heatmap is not None and heatmap.shape == cv2.imread(str(crop_jpeg)).shape
    assert "1 heatmap(s) written" in result.stderr


def test_no_pixels_written_without_heatmaps(tmp_path: Path, crop_jpeg: Path,
                                            shared_counter: object,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(crop_jpeg, "-f", "json", counter=shared_counter).exit_code == 0
    assert list(tmp_path.iterdir()) == []


def test_every_on_an_image_is_noted(crop_jpeg: Path, shared_counter: object) -> None:
    result = invoke(crop_jpeg, "--every", "1s", "-f", "csv", counter=shared_counter)
    assert result.exit_code == 0
    assert "--every only applies to videos" in result.stderr


# --- video -------------------------------------------------------------------------------


def test_bundled_video_every_20s(bundled_video: Path, shared_counter: object) -> None:
    result = invoke(bundled_video, "--every", "20s", "--format", "json", counter=shared_counter)
    assert result.exit_code == 0, result.output
    frames = json.loads(result.stdout)["frames"]
    assert [f["frame"] for f in frames] == [0, 200, 400, 600]
    assert [f["time_s"] for f in frames] == [0.0, 20.0, 40.0, 60.0]
    assert all(f["source"] == "vtest.avi" for f in frames)
    assert all(0 < f["count"] < 100 for f in frames)


def test_corrupt_video_frames_skipped_and_good_ones_counted(
        corrupt_video: Path, shared_counter: DensityCounter) -> None:
    result = invoke(corrupt_video, "--every", "200ms", "-f", "json", counter=shared_counter)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # Targets 0, 2, 4, 6, 8, 10: frame 4 (and 5) are corrupt, so 6 follows 2.
    assert [f["frame"] for f in data["frames"]] == [0, 2, 6, 8, 10]
    assert [f["time_s"] for f in data["frames"]] == [0.0, 0.2, 0.6, 0.8, 1.0]
    assert len(data["skipped"]) == 1 and data["skipped"][0]["frame"] == CORRUPT_FRAMES[0]
    assert "could not be decoded" in data["skipped"][0]["reason"]
    assert "1 skipped" in result.stderr and "frame 4-5" in result.stderr
    # The counts are the network's counts of the real frames that survived.
    source = open_source(corrupt_video)
    by_index = {f.index: f.image for f in source}
    frame6 = next(f for f in data["frames"] if f["frame"] == 6)
    assert frame6["count"] == round(shared_counter.count(by_index[6]).count, 1)


# --- folders -----------------------------------------------------------------------------


def test_folder_with_one_good_and_one_corrupt_image(tmp_path: Path, crop_jpeg: Path,
                                                    truncated_jpeg: Path,
                                                    crop_count: float,
                                                    shared_counter: object) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(crop_jpeg.read_bytes())
    (folder / "b.jpg").write_bytes(truncated_jpeg.read_bytes())
    result = invoke(folder, "-f", "json", counter=shared_counter)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(f["source"], f["count"]) for f in data["frames"]] == [("a.jpg", round(crop_count, 1))]
    assert data["skipped"] == [{"source": "b.jpg", "frame": 1,
                                "reason": "truncated JPEG (the file ends before the image does)"}]
    assert "b.jpg: truncated JPEG" in result.stderr


def test_folder_where_nothing_is_countable(tmp_path: Path, truncated_jpeg: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(truncated_jpeg.read_bytes())
    (folder / "b.png").write_bytes(b"garbage")
    assert_user_error(invoke(folder), "no frame could be counted", "a.jpg: truncated JPEG")


# --- bad input ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert_user_error(invoke(tmp_path / "nope.jpg"), "nope.jpg: no such file or folder")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n" * 20)
    assert_user_error(invoke(path), "notes.txt: not an image or a video file")


def test_truncated_jpeg(truncated_jpeg: Path) -> None:
    assert_user_error(invoke(truncated_jpeg), "truncated.jpg: truncated JPEG")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_user_error(invoke(path), "empty.jpg: file is empty (0 bytes)")


def test_one_pixel_image(tmp_path: Path, mall_jpeg: Path) -> None:
    path = tmp_path / "pixel.png"
    cv2.imwrite(str(path), cv2.imread(str(mall_jpeg))[:1, :1])
    assert_user_error(invoke(path), "pixel.png: image is 1x1 pixels", "at least 32x32")


def test_very_large_image_is_refused_before_the_engine_starts(
        tmp_path: Path, crop_jpeg: Path) -> None:
    path = tmp_path / "huge.jpg"
    huge = np.tile(cv2.imread(str(crop_jpeg)), (40, 47, 1))[:10000, :12000]
    cv2.imwrite(str(path), huge, [cv2.IMWRITE_JPEG_QUALITY, 40])
    del huge
    assert_user_error(invoke(path), "huge.jpg: image is 12000x10000 = 120 MP",
                      "the limit is 100 MP")


def test_video_that_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_text("plain text\n" * 100)
    assert_user_error(invoke(path), "clip.mp4: not a video OpenCV can open")


@pytest.mark.parametrize(("every", "message"), [("fast", "cannot read interval 'fast'"),
                                                ("0s", "must be longer than zero")])
def test_bad_interval(crop_jpeg: Path, every: str, message: str) -> None:
    assert_user_error(invoke(crop_jpeg, "--every", every), message)


def test_heatmaps_path_is_a_file(tmp_path: Path, crop_jpeg: Path) -> None:
    blocker = tmp_path / "maps"
    blocker.write_text("x")
    assert_user_error(invoke(crop_jpeg, "--heatmaps", blocker), "not a folder")


def test_output_folder_missing_fails_before_counting(tmp_path: Path, crop_jpeg: Path) -> None:
    assert_user_error(invoke(crop_jpeg, "-o", tmp_path / "no" / "out.csv"), "does not exist")


def test_bf16_unavailable_is_a_clean_error(crop_jpeg: Path) -> None:
    """bf16 on ONNX Runtime never exists: the engine says so in one line."""
    assert_user_error(invoke(crop_jpeg, "--engine", "onnxruntime", "--precision", "bf16"),
                      "bf16")


# --- library API and tiling ----------------------------------------------------------------


def test_lazy_counter_never_starts_an_engine_for_bad_frames(tmp_path: Path,
                                                           mall_jpeg: Path) -> None:
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), cv2.imread(str(mall_jpeg))[:20, :20])

    def no_engine() -> DensityCounter:
        raise AssertionError("engine started for an uncountable image")

    report = run_count(open_source(path), LazyCounter(no_engine))
    assert report.counts == [] and "20x20" in report.skipped[0].reason


def test_tiled_count_matches_single_pass(crowd_data: Path, counter: DensityCounter) -> None:
    """counter.py's tiling (lead's code) on a real 512x384 crop, with 256x256 tiles."""
    image = cv2.imread(str(crowd_data / "shanghaitech_b" / "IMG_1.jpg"))[:384, :512]
    whole = counter.count(image)
    tiled = DensityCounter(counter.engine, tile_pixels=256 * 256).count(image)
    assert tiled.density.shape == whole.density.shape == (48, 64)
    assert tiled.count == pytest.approx(whole.count, rel=0.02)
    assert np.abs(tiled.density - whole.density).max() < 0.05


# --- streams (issue 16) ------------------------------------------------------------------


def test_unreachable_stream_url_is_kept_and_its_password_never_printed() -> None:
    result = invoke("rtsp://user:s3cretpw@127.0.0.1:1/x")
    assert_user_error(result, "rtsp://***@127.0.0.1:1/x", "cannot open the stream")
    assert "s3cretpw" not in result.output
    assert "rtsp:/127" not in result.output  # the URL is not folded into a file path


def test_no_library_log_line_carries_the_stream_password() -> None:
    """FFmpeg and OpenCV write to the terminal themselves: run the command as a user does."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "crowdsafe.cli.main", "count",
                           "rtsp://user:s3cretpw@127.0.0.1:1/x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "s3cretpw" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: rtsp://***@127.0.0.1:1/x: cannot open the stream (unreachable, wrong URL or credentials, "
        "or not a video stream)"]


def test_stream_url_is_counted_for_the_given_frames(shared_counter: object) -> None:
    from tests.support.stream_servers import MjpegServer

    server = MjpegServer(fps=10).start()
    try:
        url = server.url.replace("http://", "http://viewer:s3cretpw@")
        result = invoke(url, "--frames", "2", "-f", "json", counter=shared_counter)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    frames = json.loads(result.stdout)["frames"]
    assert len(frames) == 2 and all(f["count"] >= 0 for f in frames)
    assert {f["source"] for f in frames} == {f"http://***@127.0.0.1:{server.port}/stream.mjpg"}
    assert "s3cretpw" not in result.output


def test_unknown_url_scheme_is_refused_without_credentials() -> None:
    result = invoke("ftp://user:s3cretpw@example.org/video.avi")
    assert_user_error(result, "ftp://***@example.org/video.avi", "not a stream URL")
    assert "s3cretpw" not in result.output
