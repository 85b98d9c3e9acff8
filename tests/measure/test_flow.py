"""Line flow: optical flow on real texture, flux through a line, specific flow per metre."""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np
import pytest

from crowdsafe.measure.flow import LineFlux, line_flux, optical_flow, persons_per_metre_minute


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    cap = cv2.VideoCapture(str(resources.files("crowdsafe") / "data" / "vtest.avi"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame[200:456, 100:420]  # real scene texture, 256x320


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_flow_recovers_a_known_motion_in_pixels_per_second(texture):
    v = optical_flow(texture, shifted(texture, 6, -3), dt_s=0.1)
    centre = v[64:192, 64:256].reshape(-1, 2)
    assert np.median(centre[:, 0]) == pytest.approx(60.0, rel=0.1)
    assert np.median(centre[:, 1]) == pytest.approx(-30.0, rel=0.1)


def test_flux_of_uniform_crowd_through_vertical_line(texture):
    """ρ people/px² moving right at v px/s through a vertical line of length L: ρ·v·L per second.

    Drawn downwards in the image (y grows down), the line's left side is +x, so motion to the
    right crosses from right to left: positive.
    """
    velocity = optical_flow(texture, shifted(texture, 5, 0), dt_s=0.2)  # 25 px/s to the right
    density = np.full((256 // 8, 320 // 8), 0.02, np.float32)  # people per 8x8 cell
    flux = line_flux(density, 8, velocity, a=(160, 60), b=(160, 200))  # drawn downwards
    expected = 0.02 / 64 * 25.0 * 140
    assert flux.positive_per_s == pytest.approx(expected, rel=0.1)
    assert flux.negative_per_s < 0.05 * expected
    reverse = line_flux(density, 8, velocity, a=(160, 200), b=(160, 60))  # same line, drawn up
    assert reverse.negative_per_s == pytest.approx(flux.positive_per_s, rel=1e-6)


def test_static_density_adds_no_flow(texture):
    velocity = optical_flow(texture, texture.copy(), dt_s=0.2)
    density = np.full((32, 40), 0.5, np.float32)  # lots of (false) people, none moving
    flux = line_flux(density, 8, velocity, a=(20, 128), b=(300, 128))
    assert flux.positive_per_s + flux.negative_per_s < 1e-3


def test_specific_flow_and_bad_geometry():
    assert persons_per_metre_minute(LineFlux(1.0, 0.5), width_m=3.0) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="width"):
        persons_per_metre_minute(LineFlux(1.0, 0.0), width_m=0.0)
    with pytest.raises(ValueError, match="shorter"):
        line_flux(np.zeros((4, 4), np.float32), 8, np.zeros((32, 32, 2), np.float32), (3, 3), (3.2, 3.1))
