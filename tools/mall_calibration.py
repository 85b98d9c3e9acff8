"""Derive the Mall camera's floor calibration and region-of-interest zone (benchmarks/sites/mall.yaml).

Usage: python tools/mall_calibration.py ../shared/data/crowd/mall/perspective.npz

The dataset's perspective map (``pMapN``) depends on the row only, and 1/sqrt(p) is linear in
the row to 4e-5 (relative): p is the squared inverse of a person's pixel height, as in the
perspective normalisation of Chan et al. (area features weighted by the square). Its zero is
the horizon row. A pinhole camera with no roll, focal length F, tilt T and height HC over a flat
floor puts a person of height HP with feet at row y at height h(y) ~ (y - horizon) * HP / HC
(exactly so for an untilted camera), which fixes HC for a typical person height. The person
heights in pixels measured by eye on training frame 1 (four people, feet at rows 120-402:
55, 73, 82, 105 px) give h / (y - horizon) = 0.193-0.210; the pinhole with F = 1300 px and
HC = 8.0 m gives 0.204-0.191 over those rows, and the ratio's slight fall down the image (it
is the tilt's foreshortening) is what pins F: 900 px predicts 0.18-0.17, 2000 px 0.21-0.20.
Error stated in the site file's comment (what a 900-2000 px focal range and HP 1.6-1.8 m
change in the area of a density cell).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

W, H = 640, 480
F, HC = 1300.0, 8.0
HEAD_HEIGHT_M = 1.6  # the site's head_height_m


def horizon_row(perspective: np.ndarray) -> float:
    rows = np.arange(perspective.shape[0])
    slope, icept = np.polyfit(rows, 1 / np.sqrt(perspective[:, 0]), 1)
    return float(-icept / slope)


def ground(u: np.ndarray, v: np.ndarray, f: float, tilt: float, hc: float) -> np.ndarray:
    """Image pixels -> floor metres (x right, y away from the camera, camera above (0, 0))."""
    xc, yc = (u - W / 2) / f, (v - H / 2) / f
    ray_x, ray_y = xc, np.cos(tilt) - yc * np.sin(tilt)
    ray_z = -np.sin(tilt) - yc * np.cos(tilt)
    t = hc / -ray_z
    return np.stack([t * ray_x, t * ray_y], axis=-1)


def tilt_for(f: float, horizon: float) -> float:
    return float(np.arctan((H / 2 - horizon) / f))


def person_px(f: float, hc: float, horizon: float, v: float, hp: float = 1.7) -> float:
    """Pixel height of a person of ``hp`` metres whose feet are at row ``v``."""
    tilt = tilt_for(f, horizon)
    depression = tilt + np.arctan((v - H / 2) / f)
    distance = hc / np.tan(depression)
    head = tilt - np.arctan((hc - hp) / distance)
    return float(v - (H / 2 - f * np.tan(head)))


def cell_area(f: float, hc: float, horizon: float, u: float, v: float) -> float:
    tilt = tilt_for(f, horizon)
    pts = ground(np.array([u, u + 8, u, u + 8]), np.array([v, v, v + 8, v + 8]), f, tilt, hc)
    a, b, c = pts[0], pts[1], pts[2]
    (ux, uy), (wx, wy) = b - a, c - a
    return float(abs(ux * wy - uy * wx))


def main(path: str) -> None:
    data = np.load(path)
    horizon = horizon_row(data["perspective"])
    tilt = tilt_for(F, horizon)
    print(f"horizon row {horizon:.1f}; tilt {np.degrees(tilt):.1f} deg")
    us = np.array([40, 320, 600, 40, 320, 600, 40, 320, 600], float)
    vs = np.array([470, 470, 470, 330, 330, 330, 200, 200, 200], float)
    g = ground(us, vs, F, tilt, HC)
    print("image_points:", [[int(u), int(v)] for u, v in zip(us, vs, strict=True)])
    print("ground_points:", [[round(float(x), 3), round(float(y), 3)] for x, y in g])
    roi = (data["roi"] > 0).astype(np.uint8)
    contours, _ = cv2.findContours(roi, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    poly = cv2.approxPolyDP(outline, 3.0, True)[:, 0, :].astype(float)
    # Density sits at the heads (design notes): the zone is where the people stand whose heads
    # the region of interest shows, i.e. the region mapped through the plane at head height.
    zone = ground(poly[:, 0], poly[:, 1], F, tilt, HC - HEAD_HEIGHT_M)
    print("zone image polygon:", poly.astype(int).tolist())
    print("zone polygon:", [[round(float(x), 2), round(float(y), 2)] for x, y in zone])
    for v in (60, 240, 450):
        ref = cell_area(F, HC, horizon, 320, v)
        spread = []
        for f in (900, 2000):
            # the camera height that keeps a person at row 300 as tall in pixels as with (F, HC)
            hc_f = HC * person_px(f, HC, horizon, 300) / person_px(F, HC, horizon, 300)
            for hp in (1.6, 1.8):  # the camera height scales with the person height assumed
                spread.append(cell_area(f, hc_f * hp / 1.7, horizon, 320, v) / ref)
        print(f"row {v}: cell {ref:.3f} m2; focal 900-2000 px and person 1.6-1.8 m: "
              f"x{min(spread):.2f} to x{max(spread):.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
