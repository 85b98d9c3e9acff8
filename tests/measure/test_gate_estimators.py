"""Gate estimators at live sampling: a blurred person carried across a line, sampled sparsely."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crowdsafe.measure.flow import band_crossings, band_half_width_m, line_flux, swept_crossings

CELL = 4
SCALE = 0.05  # metres per pixel: a top-down camera, image x → ground x, image y → ground y
TO_GROUND = np.diag([SCALE, SCALE, 1.0])
TO_IMAGE = np.linalg.inv(TO_GROUND)
SHAPE = (100, 100)  # cells: 400 x 400 px, 20 x 20 m


def frame(x_m: float, y_m: float, vx_ms: float, sigma_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(density per cell, velocity px/s) of one person at (x, y) blurred by ``sigma_m``, walking along x."""
    rows, cols = SHAPE
    cy, cx = np.mgrid[0:rows, 0:cols]
    gx, gy = (cx + 0.5) * CELL * SCALE, (cy + 0.5) * CELL * SCALE
    d = np.exp(-((gx - x_m) ** 2 + (gy - y_m) ** 2) / (2 * sigma_m**2))
    d /= d.sum()
    velocity = np.zeros((rows * CELL, cols * CELL, 2), np.float32)
    velocity[..., 0] = vx_ms / SCALE
    return d.astype(np.float32), velocity


GATE = ((10.0, 9.6), (10.0, 10.4))  # a 0.8 m gate across x = 10 (ground metres)
PASSAGE = ((10.0, 8.0), (10.0, 12.0))
IN = (1.0, 0.0)


def walk(estimator: str, period: float, phase: float, speed: float = 1.3, sigma: float = 0.3,
         passage: tuple = PASSAGE) -> tuple[float, float]:
    """(in, out) summed over samples every ``period`` of a person walking x = 5 → 15 at y = 10."""
    total_in = total_out = 0.0
    t = phase * period
    while 5.0 + speed * t < 15.0:
        density, velocity = frame(5.0 + speed * t, 10.0, speed, sigma)
        if estimator == "band":
            c = band_crossings(density, CELL, velocity, TO_IMAGE, *passage, IN, period,
                               band_half_width_m(period))
            total_in, total_out = total_in + c.in_count, total_out + c.out_count
        elif estimator == "swept":
            c = swept_crossings(density, CELL, velocity, TO_GROUND, *passage, IN, period)
            total_in, total_out = total_in + c.in_count, total_out + c.out_count
        else:
            a, b = (np.asarray(passage) / SCALE).tolist()
            f = line_flux(density, CELL, velocity, tuple(a), tuple(b))
            # in = +x; line_flux's positive side is the left of a→b in the image (normal (dy, -dx)).
            total_in += f.positive_per_s * period
            total_out += f.negative_per_s * period
        t += period
    return total_in, total_out


@pytest.mark.parametrize("estimator", ["band", "swept"])
@pytest.mark.parametrize("period", [0.5, 1.0, 2.0])
def test_sparse_samples_count_one_walker_once_whatever_the_phase(estimator, period):
    counts = [walk(estimator, period, phase) for phase in np.linspace(0, 1, 8, endpoint=False)]
    ins = np.array([c[0] for c in counts])
    assert ins.mean() == pytest.approx(1.0, abs=0.03)
    assert np.all(np.array([c[1] for c in counts]) < 1e-6)
    if estimator == "swept":
        assert np.all(np.abs(ins - 1.0) < 0.05)  # rigid motion: exact at every phase


@pytest.mark.parametrize(("period", "sigma"), [(2.0, 0.1), (2.0, 0.15), (1.5, 0.1)])
def test_one_copy_per_density_cell_reads_the_mass_in_the_band_wherever_a_sharp_walker_is(period, sigma):
    """A band 3 m deep (2 s) with 8 copies has them 0.375 m apart: a sharp blur is on a copy or
    between two. One copy per density cell (0.2 m here) reads the walker's mass in the band x its
    speed / the depth, times the period, wherever it is."""
    speed, depth = 1.3, 2 * band_half_width_m(period)
    errors: dict[int | None, list[float]] = {8: [], None: []}
    for x in 10.0 + np.linspace(0.3, depth - 0.3, 23):
        density, velocity = frame(float(x), 10.0, speed, sigma)
        z = sigma * math.sqrt(2)
        inside = 0.5 * (math.erf((10.0 + depth - x) / z) - math.erf((10.0 - x) / z))
        exact = inside * speed * period / depth
        for lines in errors:
            c = band_crossings(density, CELL, velocity, TO_IMAGE, *PASSAGE, IN, period,
                               band_half_width_m(period), lines=lines)
            errors[lines].append(c.in_count / exact - 1.0)
    worst = {lines: float(np.max(np.abs(e))) for lines, e in errors.items()}
    assert worst[None] < 0.1, worst
    assert worst[8] > 2 * worst[None], worst


def test_a_snapshot_times_the_period_is_right_on_average_but_not_per_walker():
    counts = np.array([walk("snapshot", 2.0, phase)[0] for phase in np.linspace(0, 1, 8, endpoint=False)])
    assert counts.mean() == pytest.approx(1.0, abs=0.05)
    assert counts.max() - counts.min() > 0.5  # one walker: seen on the line or missed


def test_a_passage_as_narrow_as_the_gate_loses_the_blur_and_the_passage_keeps_it():
    narrow = np.mean([walk("band", 1.0, p, sigma=0.5, passage=GATE)[0] for p in (0.0, 0.5)])
    wide = np.mean([walk("band", 1.0, p, sigma=0.5)[0] for p in (0.0, 0.5)])
    assert narrow < 0.7
    assert wide == pytest.approx(1.0, abs=0.05)


def test_walking_the_other_way_counts_out():
    outs = []
    for phase in np.linspace(0, 1, 8, endpoint=False):
        total_in = total_out = 0.0
        for k in range(12):
            density, velocity = frame(14.0 - 1.3 * (k + phase), 10.0, -1.3, 0.3)
            c = band_crossings(density, CELL, velocity, TO_IMAGE, *PASSAGE, IN, 1.0, band_half_width_m(1.0))
            total_in, total_out = total_in + c.in_count, total_out + c.out_count
        assert total_in < 1e-6
        outs.append(total_out)
    assert np.mean(outs) == pytest.approx(1.0, abs=0.03)


def test_bad_periods_are_refused():
    density, velocity = frame(10.0, 10.0, 1.0, 0.3)
    with pytest.raises(ValueError, match="period"):
        band_crossings(density, CELL, velocity, TO_IMAGE, *PASSAGE, IN, 0.0, 0.5)
    with pytest.raises(ValueError, match="period"):
        swept_crossings(density, CELL, velocity, TO_GROUND, *PASSAGE, IN, -1.0)


def test_a_band_cut_by_the_image_edge_counts_on_the_copies_the_camera_sees():
    """A gate 1.5 m from the image's right edge, sampled every 2 s: the band on the exit side is
    4 m deep, most of it beyond the image. Copies out of view would read the border's pixels (or
    zeros, averaged in); the copies in view are a shallower band and count the walker once on
    average, in either direction."""
    rows, cols = SHAPE
    cy, cx = np.mgrid[0:rows, 0:cols]
    gx, gy = (cx + 0.5) * CELL * SCALE, (cy + 0.5) * CELL * SCALE
    gate_x, edge_x = 18.5, cols * CELL * SCALE
    passage = ((gate_x, 8.0), (gate_x, 12.0))

    def seen(x_m: float, vx_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """A walker's blur as the camera sees it: the part beyond the image is not in the map."""
        sigma, cell_m = 0.3, CELL * SCALE
        d = np.exp(-((gx - x_m) ** 2 + (gy - 10.0) ** 2) / (2 * sigma**2))
        d *= cell_m**2 / (2 * np.pi * sigma**2)
        velocity = np.zeros((rows * CELL, cols * CELL, 2), np.float32)
        velocity[..., 0] = vx_ms / SCALE
        return d.astype(np.float32), velocity

    period, speed = 2.0, 1.3
    for direction in (1.0, -1.0):
        totals = []
        for phase in np.linspace(0, 1, 8, endpoint=False):
            total = 0.0
            t = phase * period
            start = gate_x - 4.0 if direction > 0 else edge_x + 1.0
            while 0.0 <= t <= (edge_x + 1.0 - (gate_x - 4.0)) / speed:
                density, velocity = seen(start + direction * speed * t, direction * speed)
                c = band_crossings(density, CELL, velocity, TO_IMAGE, *passage, IN, period,
                                   band_half_width_m(period))
                total += c.in_count if direction > 0 else c.out_count
                t += period
            totals.append(total)
        assert np.mean(totals) == pytest.approx(1.0, abs=0.06), (direction, totals)
