"""Derive image<->ground point pairs for the demo site from the PETS 2009 Tsai calibration.

Dev tool, not part of the package. It reads ``View_001.xml`` (PETS 2009 S2.L1, View 001; Tsai
camera model, world in millimetres on the ground plane z = 0), maps chosen floor pixels to the
ground with the full Tsai model (including radial lens distortion kappa1), prints the pairs in
metres ready to paste into ``src/crowdsafe/data/demo_site.yaml``, and reports how far a plain
homography fitted to those pairs strays from the Tsai mapping over the floor: the site file can
only carry a homography, so that error is the price of ignoring lens distortion.

Usage: python tools/pets_calibration.py [/path/to/View_001.xml]
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_XML = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video" / "View_001.xml"

#: Floor pixels for the calibration pairs: well spread over the walkable area of the 768x576 frame
#: (lawn and paths), none above the far footpath where the ground is seen at a grazing angle.
FLOOR_PIXELS = [
    (60.0, 560.0), (380.0, 560.0), (720.0, 560.0),
    (30.0, 380.0), (400.0, 360.0), (740.0, 380.0),
    (120.0, 200.0), (420.0, 170.0), (700.0, 190.0),
]


@dataclass(frozen=True)
class TsaiCamera:
    """Tsai (1987) camera: pixel -> distorted sensor mm -> undistorted -> ray -> ground z = 0."""

    dpx: float
    dpy: float
    cx: float
    cy: float
    sx: float
    focal: float
    kappa1: float
    rotation: np.ndarray  # world -> camera, 3x3
    translation: np.ndarray  # mm

    @classmethod
    def from_xml(cls, path: Path) -> TsaiCamera:
        root = ET.parse(path).getroot()
        geo, intr, ext = root.find("Geometry"), root.find("Intrinsic"), root.find("Extrinsic")
        assert geo is not None and intr is not None and ext is not None, "not a PETS calibration file"
        g = {k: float(v) for k, v in geo.attrib.items()}
        i = {k: float(v) for k, v in intr.attrib.items()}
        e = {k: float(v) for k, v in ext.attrib.items()}
        return cls(dpx=g["dpx"], dpy=g["dy"], cx=i["cx"], cy=i["cy"], sx=i["sx"], focal=i["focal"],
                   kappa1=i["kappa1"], rotation=tsai_rotation(e["rx"], e["ry"], e["rz"]),
                   translation=np.array([e["tx"], e["ty"], e["tz"]]))

    def image_to_ground(self, pixels: np.ndarray) -> np.ndarray:
        """(N,2) pixels -> (N,2) ground metres (Tsai world x, y on z = 0, divided by 1000)."""
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        xd = self.dpx * (pixels[:, 0] - self.cx) / self.sx
        yd = self.dpy * (pixels[:, 1] - self.cy)
        factor = 1.0 + self.kappa1 * (xd**2 + yd**2)
        rays_cam = np.stack([xd * factor, yd * factor, np.full_like(xd, self.focal)], axis=1)
        rays_world = rays_cam @ self.rotation  # R^T applied to each row
        centre = -self.rotation.T @ self.translation
        t = -centre[2] / rays_world[:, 2]
        ground = centre[None, :] + t[:, None] * rays_world
        return ground[:, :2] / 1000.0

    def ground_to_image(self, ground_m: np.ndarray) -> np.ndarray:
        """(N,2) ground metres -> (N,2) pixels (distortion applied by fixed-point iteration)."""
        world = np.column_stack([np.asarray(ground_m, float).reshape(-1, 2) * 1000.0,
                                 np.zeros(len(np.asarray(ground_m).reshape(-1, 2)))])
        cam = world @ self.rotation.T + self.translation
        xu, yu = self.focal * cam[:, 0] / cam[:, 2], self.focal * cam[:, 1] / cam[:, 2]
        xd, yd = xu.copy(), yu.copy()
        for _ in range(50):
            factor = 1.0 + self.kappa1 * (xd**2 + yd**2)
            xd, yd = xu / factor, yu / factor
        return np.column_stack([xd * self.sx / self.dpx + self.cx, yd / self.dpy + self.cy])


def tsai_rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Tsai's world->camera rotation R = Rz(rz) @ Ry(ry) @ Rx(rx) (Willson's implementation)."""
    sa, ca = np.sin(rx), np.cos(rx)
    sb, cb = np.sin(ry), np.cos(ry)
    sg, cg = np.sin(rz), np.cos(rz)
    return np.array([
        [cb * cg, cg * sa * sb - ca * sg, sa * sg + ca * cg * sb],
        [cb * sg, sa * sb * sg + ca * cg, ca * sb * sg - cg * sa],
        [-sb, cb * sa, ca * cb],
    ])


def floor_grid(step: float = 8.0, top: float = 160.0) -> np.ndarray:
    """Pixels covering the floor region the zones use (rows below ``top``)."""
    us, vs = np.meshgrid(np.arange(0.0, 768.0, step), np.arange(top, 576.0, step))
    return np.column_stack([us.ravel(), vs.ravel()])


def main(argv: list[str]) -> None:
    camera = TsaiCamera.from_xml(Path(argv[1]) if len(argv) > 1 else DEFAULT_XML)
    pixels = np.array(FLOOR_PIXELS)
    ground = camera.image_to_ground(pixels)
    back = camera.ground_to_image(ground)
    assert np.abs(back - pixels).max() < 1e-6, "Tsai forward/backward mapping disagree"

    # Check against MOT15 gt.txt world columns (frame 1: ids 9, 15, 19; foot = left + w/2, top + h).
    mot = {9: ((514.515, 233.17), (-4.1554, -7.3591)), 15: ((274.457, 307.702), (-11.306, -5.5995)),
           19: ((654.169, 323.074), (-9.0323, -12.587))}
    for pid, (px, world) in mot.items():
        g = camera.image_to_ground(np.array([px]))[0]
        print(f"# MOT15 id {pid}: Tsai {g.round(3).tolist()} m vs gt.txt {list(world)} m "
              f"(diff {np.hypot(*(g - world)):.3f} m)")

    print("calibration:")
    print("  image_points: [" + ", ".join(f"[{u:g}, {v:g}]" for u, v in pixels) + "]")
    print("  ground_points: [" + ", ".join(f"[{x:.3f}, {y:.3f}]" for x, y in ground) + "]")

    h, _ = cv2.findHomography(pixels, ground.round(3), 0)
    grid = floor_grid()
    truth = camera.image_to_ground(grid)
    est = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), h).reshape(-1, 2)
    err = np.hypot(*(est - truth).T)
    at_pairs = np.hypot(*(cv2.perspectiveTransform(pixels.reshape(-1, 1, 2), h).reshape(-1, 2) - ground).T)
    print(f"# homography vs Tsai over the floor (rows >= 160, {len(grid)} px): "
          f"RMS {np.sqrt((err**2).mean()):.3f} m,"
          f" median {np.median(err):.3f} m, 95% {np.quantile(err, 0.95):.3f} m, max {err.max():.3f} m")
    print(f"# homography at the {len(pixels)} pairs: RMS {np.sqrt((at_pairs**2).mean()):.3f} m, "
          f"max {at_pairs.max():.3f} m")


if __name__ == "__main__":
    main(sys.argv)
