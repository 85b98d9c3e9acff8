"""Heatmap overlays: units of the colour scale, rendering on a real frame, file writing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsafe.counting.counter import DensityCounter, DensityResult
from crowdsafe.render.heatmap import AREA_SIDE, per_area, render_heatmap, write_image
from crowdsafe.render.writer import HeatmapWriter
from crowdsafe.sources.frames import Frame


def _one_person(height: int = 400, width: int = 400) -> DensityResult:
    density = np.zeros((height // 8, width // 8), np.float32)
    density[height // 16, width // 16] = 1.0
    return DensityResult(density, height, width)


def test_scale_is_people_within_a_100px_window() -> None:
    """One person's density at the centre: the window around it holds 1 person, far away 0."""
    area = per_area(_one_person(), 400, 400)
    assert area.shape == (400, 400)
    assert area[200, 200] == pytest.approx(1.0, abs=0.02)
    assert area[200, 200 + AREA_SIDE] == pytest.approx(0.0, abs=1e-6)
    assert area.max() == pytest.approx(1.0, abs=0.02)


def test_negative_density_is_not_shown() -> None:
    result = DensityResult(np.full((50, 50), -0.1, np.float32), 400, 400)
    assert per_area(result, 400, 400).min() == 0


@pytest.fixture(scope="module")
def crop_and_density(crop_jpeg: Path, counter: DensityCounter) -> tuple[np.ndarray, DensityResult]:
    image = cv2.imread(str(crop_jpeg))
    return image, counter.count(image)


def test_overlay_on_real_frame(crop_and_density: tuple[np.ndarray, DensityResult]) -> None:
    image, result = crop_and_density
    overlay = render_heatmap(image, result)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    h, w = image.shape[:2]
    # Colour goes where the density is; sparse areas stay closer to the real frame.
    area = per_area(result, h, w)
    body = np.zeros((h, w), bool)
    body[h // 6:, : w * 2 // 3] = True  # away from the count text and the colour bar
    change = np.abs(overlay.astype(int) - image.astype(int)).sum(axis=2)
    low, high = np.quantile(area[body], [0.2, 0.8])
    dense, sparse = body & (area >= high), body & (area <= low)
    assert change[dense].mean() > 2 * change[sparse].mean()


def test_count_text_and_bar_are_drawn(crop_and_density: tuple[np.ndarray, DensityResult]) -> None:
    image, result = crop_and_density
    a = render_heatmap(image, result)
    b = render_heatmap(image, DensityResult(result.density * 2, *image.shape[:2]))
    h, w = image.shape[:2]
    assert not np.array_equal(a[: h // 8, : w // 2], b[: h // 8, : w // 2])  # count label
    assert not np.array_equal(a[:, -w // 5:], image[:, -w // 5:])  # colour bar region


def test_fixed_scale_keeps_frames_comparable(
        crop_and_density: tuple[np.ndarray, DensityResult]) -> None:
    image, result = crop_and_density
    low = render_heatmap(image, result, scale_max=100.0)
    high = render_heatmap(image, result, scale_max=1.0)
    h, w = image.shape[:2]
    assert np.abs(low[h // 6:, : w // 2].astype(int) - image[h // 6:, : w // 2]).mean() < \
        np.abs(high[h // 6:, : w // 2].astype(int) - image[h // 6:, : w // 2]).mean()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_write_image_round_trip(tmp_path: Path, crop_jpeg: Path, suffix: str) -> None:
    image = cv2.imread(str(crop_jpeg))
    path = write_image(tmp_path / f"out{suffix}", image)
    back = cv2.imread(str(path))
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image).mean() < (0.01 if suffix == ".png" else 4)


def test_write_image_errors_are_raised(tmp_path: Path) -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(OSError):
        write_image(tmp_path / "missing-dir" / "x.png", image)
    with pytest.raises(OSError, match="cannot encode"):
        write_image(tmp_path / "x.notanimage", image)


def test_writer_names_files_after_their_source(tmp_path: Path) -> None:
    writer = HeatmapWriter(tmp_path / "maps")
    result = _one_person(64, 64)
    image = np.zeros((64, 64, 3), np.uint8)
    writer(Frame("clip.mp4", 200, 20.0, image), result)
    writer(Frame("a.jpg", 0, None, image), result)
    writer(Frame("a.png", 1, None, image), result)
    assert [p.name for p in writer.written] == ["clip_000200.jpg", "a_heatmap.jpg",
                                                "a_000001_heatmap.jpg"]
    assert all(cv2.imread(str(p)).shape == (64, 64, 3) for p in writer.written)


def test_writer_refuses_a_file_as_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="not a folder"):
        HeatmapWriter(tmp_path / "file")
