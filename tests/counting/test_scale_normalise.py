"""Scale normalisation: band plans, mass-preserving resampling, and band counting end to end."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest

from crowdsafe.counting.counter import DensityCounter, DensityResult, ImageError, validate_image
from crowdsafe.counting.graph import STRIDE
from crowdsafe.counting.scale import (
    BAND_RATIO,
    MAX_SCALE,
    Band,
    ScaleNormalisedCounter,
    normalised_counter,
    person_px_from_points,
    person_px_per_row,
    plan_bands,
    resample_density,
)


class BlobCounter:
    """Counts bright square blobs of one size (in pixels) and no other: a scale-specific counter.

    A real density CNN is scale-specific in the same way; this one is exact, so the tests can
    tell where every unit of mass lands after bands are resized and mapped back.
    """

    def __init__(self, side: int) -> None:
        self.side = side
        self.engine = None

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        image = validate_image(image_bgr)
        h, w = image.shape[:2]
        out = np.zeros((h // STRIDE, w // STRIDE), np.float32)
        mask = (image[:, :, 0] > 127).astype(np.uint8)
        n, _, stats, centres = cv2.connectedComponentsWithStats(mask)
        for i in range(1, n):
            bw, bh = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
            if abs(bw - self.side) <= 0.2 * self.side and abs(bh - self.side) <= 0.2 * self.side:
                r, c = int(centres[i][1]) // STRIDE, int(centres[i][0]) // STRIDE
                if r < out.shape[0] and c < out.shape[1]:
                    out[r, c] += 1.0
        return DensityResult(out, h, w, model="sparse")


def blob_sizes(h: int = 480) -> np.ndarray:
    """Blob side by row, growing linearly down the image like people under a tilted camera."""
    return 6 + np.arange(h) * (30 - 6) / (h - 1)


def perspective_scene(rows: list[int], h: int = 480, w: int = 640
                      ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A row of blobs at each of ``rows``, each blob as large as its row says."""
    sizes = blob_sizes(h)
    image = np.zeros((h, w, 3), np.uint8)
    centres = []
    for y in rows:
        for x in range(40, w - 40, 90):
            s = round(float(sizes[y]))
            image[y - s // 2:y - s // 2 + s, x - s // 2:x - s // 2 + s] = 255
            centres.append((y, x))
    return image, centres


def test_uniform_height_at_target_is_one_unscaled_band() -> None:
    bands = plan_bands(np.full(480, 150.0), 150.0)
    assert bands == [Band(0, 480, 1.0)]


def test_bands_cover_the_image_on_the_cell_grid_with_bounded_scale_spread() -> None:
    heights = np.linspace(20, 200, 600)
    bands = plan_bands(heights, 150.0)
    assert bands[0].top == 0 and bands[-1].bottom == 600 // STRIDE * STRIDE
    for a, b in pairwise(bands):
        assert a.bottom == b.top
    for band in bands:
        assert band.top % STRIDE == 0 and band.bottom % STRIDE == 0
        wanted = np.clip(150.0 / heights[band.top:band.bottom], 0.5, MAX_SCALE)
        if band.scale != 1.0:
            assert wanted.min() / BAND_RATIO <= band.scale <= wanted.max() * BAND_RATIO
    scales = [b.scale for b in bands]
    assert scales == sorted(scales, reverse=True)  # far rows (small people) grow most
    assert MAX_SCALE / BAND_RATIO <= scales[0] <= MAX_SCALE  # 20 px would need 7.5x: clamped


def test_bad_heights_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_bands(np.r_[np.full(100, 50.0), np.nan], 150.0)
    with pytest.raises(ValueError, match="no person height"):
        person_px_per_row(np.full((10, 10), np.nan), 80)


def test_person_heights_per_row_fill_unknown_rows_from_the_nearest_known() -> None:
    cells = np.full((6, 4), np.nan)
    cells[2:] = np.array([[40.0], [50.0], [60.0], [70.0]])
    rows = person_px_per_row(cells, 48)
    assert rows.shape == (48,)
    assert rows[0] == 40.0 and rows[2 * STRIDE] == 40.0 and rows[-1] == 70.0


@pytest.mark.parametrize("shape", [(30, 40), (7, 9), (60, 80)])
def test_resampling_conserves_people(shape: tuple[int, int]) -> None:
    density = np.random.default_rng(0).random((20, 25)).astype(np.float32)
    out = resample_density(density, *shape)
    assert out.shape == shape and out.min() >= 0
    assert out.sum() == pytest.approx(density.sum(), rel=1e-5)


def test_a_scale_specific_counter_counts_every_blob_once_normalised() -> None:
    sizes = blob_sizes()
    bands = plan_bands(sizes, 18.0, ratio=1.12, min_scale=0.5, max_scale=3.5)
    assert len(bands) >= 6
    rows = [(b.top + b.bottom) // 2 for b in bands]  # a row of blobs in the middle of each band
    image, centres = perspective_scene(rows)
    plain = BlobCounter(side=18)
    assert plain.count(image).count < 0.5 * len(centres)  # blobs of other sizes are missed
    result = ScaleNormalisedCounter(plain, bands, intervals=None).count(image)
    assert result.density.shape == (480 // STRIDE, 640 // STRIDE)
    assert result.count == pytest.approx(len(centres), abs=1)
    # ... and each blob's mass lands within two cells of its own (a downscaled band's cell
    # covers more than 8 pixels, so mass spreads that far), not elsewhere.
    for y, x in centres:
        r, c = y // STRIDE, x // STRIDE
        assert result.density[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].sum() >= 0.95


def test_dense_model_is_never_rescaled() -> None:
    counter = BlobCounter(side=18)
    assert normalised_counter(counter, "dense", np.full(480, 30.0)) is counter
    assert normalised_counter(counter, "sparse", np.full(480, 150.0)) is counter
    scaled = normalised_counter(counter, "sparse", np.full(480, 30.0))
    assert isinstance(scaled, ScaleNormalisedCounter)
    with pytest.raises(ImageError, match="rows"):
        scaled.count(np.zeros((400, 640, 3), np.uint8))


def test_hand_measured_heights_interpolate_and_extrapolate() -> None:
    rows = person_px_from_points([[100, 40], [300, 100], [200, 80], [300, 110]], 480)
    assert rows[100] == pytest.approx(40) and rows[200] == pytest.approx(80)
    assert rows[300] == pytest.approx(105)  # two people measured on one row: their mean
    assert rows[250] == pytest.approx(92.5)
    assert rows[0] == pytest.approx(4.0)  # 40 - 100 * 0.4 < 4: floored
    assert rows[479] == pytest.approx(105 + 179 * 0.25)
    with pytest.raises(ValueError, match="two"):
        person_px_from_points([[100, 40]], 480)
    with pytest.raises(ValueError, match="positive"):
        person_px_from_points([[100, 40], [200, -3]], 480)


def test_unscaled_bands_reproduce_the_single_pass_density(counter: DensityCounter,
                                                          mall_jpeg: object) -> None:
    """Band stitching with context rows: at scale 1 the network's map is (nearly) unchanged."""
    image = cv2.imread(str(mall_jpeg))
    whole = counter.count(image)
    bands = [Band(0, 160, 1.0), Band(160, 320, 1.0), Band(320, 480, 1.0)]
    stitched = ScaleNormalisedCounter(counter, bands, model="dense", intervals=None).count(image)
    assert stitched.density.shape == whole.density.shape
    assert stitched.count == pytest.approx(whole.count, rel=0.03)
    assert np.abs(stitched.density - whole.density).sum() < 0.1 * whole.count


def test_rows_inside_the_trained_range_are_left_alone() -> None:
    heights = np.r_[np.full(160, 30.0), np.full(160, 120.0), np.full(160, 400.0)]
    bands = plan_bands(heights, (60.0, 200.0))
    assert [(b.top, b.bottom) for b in bands] == [(0, 160), (160, 320), (320, 480)]
    assert [b.scale for b in bands] == pytest.approx([2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="range"):
        plan_bands(heights, (200.0, 60.0))
