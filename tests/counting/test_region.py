"""Region-only inference: the crop is on the grid, inside the frame, with its margin, and counts
what the full frame counts inside it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.graph import STRIDE
from crowdsafe.counting.region import (
    FULL_FRAME_SHARE,
    REGION_MARGIN,
    Box,
    RegionCounter,
    needed_box,
    plan_region,
    with_margin,
)


def mask(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[rows, cols] = True
    return out


@pytest.mark.parametrize(("rows", "cols", "expected"), [
    (slice(2, 5), slice(3, 6), Box(24, 16, 48, 40)),
    (slice(0, 1), slice(0, 1), Box(0, 0, 8, 8)),
    (slice(71, 72), slice(95, 96), Box(760, 568, 768, 576)),
])
def test_needed_box_spans_the_needed_cells_in_pixels(rows, cols, expected):
    assert needed_box(mask((72, 96), rows, cols)) == expected


def test_no_needed_cell_has_no_box():
    assert needed_box(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize(("core", "margin", "size", "expected"), [
    (Box(200, 160, 400, 320), 64, (768, 576), Box(136, 96, 464, 384)),  # margin on every side
    (Box(16, 8, 120, 80), 64, (768, 576), Box(0, 0, 184, 144)),  # clipped at the top-left
    (Box(640, 480, 768, 576), 32, (768, 576), Box(608, 448, 768, 576)),  # clipped at the bottom-right
    (Box(640, 480, 760, 576), 64, (763, 581), Box(576, 416, 763, 581)),  # frame off the grid: its edge
    (Box(200, 160, 400, 320), 0, (768, 576), Box(200, 160, 400, 320)),
])
def test_margin_is_added_on_the_grid_and_clipped_to_the_frame(core, margin, size, expected):
    crop = with_margin(core, margin, *size)
    assert crop == expected
    assert crop.x0 % STRIDE == 0 and crop.y0 % STRIDE == 0


def test_margin_off_the_grid_is_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        with_margin(Box(0, 0, 8, 8), 20, 64, 64)


@pytest.mark.parametrize(("needed", "size", "region"), [
    (mask((72, 96), slice(20, 40), slice(30, 60)), (768, 576), (Box(240, 160, 480, 320), None)),
    (np.zeros((72, 96), bool), (768, 576), None),  # serves no zone or line: the whole frame
    (mask((72, 96), slice(8, 72), slice(0, 96)), (768, 576), None),  # nearly all of it: whole frame
    (mask((72, 95), slice(60, 72), slice(85, 95)), (763, 581), (Box(680, 480, 760, 576), None)),  # off grid
])
def test_plan_region(needed, size, region):
    planned = plan_region(needed, size)
    if region is None:
        assert planned is None
        return
    core, crop = planned
    assert core == region[0]
    assert crop == with_margin(core, REGION_MARGIN, *size)
    assert crop.pixels < FULL_FRAME_SHARE * size[0] * size[1]


@pytest.fixture(scope="module")
def demo_frame(bundled_video) -> np.ndarray:
    capture = cv2.VideoCapture(str(bundled_video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 300)
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


@pytest.mark.parametrize("core", [Box(256, 192, 512, 384), Box(384, 232, 768, 576)])
def test_region_counts_equal_full_frame_inside_the_core(counter: DensityCounter, demo_frame, core):
    """On a real frame (the demo video, 768x576), with the shipped margin and the real engine."""
    h, w = demo_frame.shape[:2]
    full = counter.count(demo_frame)
    region = RegionCounter(counter, core, with_margin(core, REGION_MARGIN, w, h)).count(demo_frame)
    assert region.density.shape == full.density.shape
    inside = full.density[core.cells()].sum(dtype=np.float64)
    assert inside > 1.0  # people to count, or the comparison says nothing
    assert region.count == pytest.approx(inside, rel=0.005)
    outside = np.ones(full.density.shape, bool)
    outside[core.cells()] = False
    assert not region.density[outside].any()


def test_a_frame_of_another_size_is_counted_whole(counter: DensityCounter, demo_frame):
    """A region planned for another size cannot be trusted: the whole frame is counted."""
    small = cv2.resize(demo_frame, (256, 192), interpolation=cv2.INTER_AREA)
    region = RegionCounter(counter, Box(256, 192, 512, 384), Box(192, 128, 576, 448)).count(small)
    assert region.count == pytest.approx(counter.count(small).count)
