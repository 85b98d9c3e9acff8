"""Camera pose from the floor homography, to know how tall a person looks at each spot.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.pose``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsafe.geometry.homography import apply


@dataclass(frozen=True)
class CameraPose:
    """Pinhole camera over the floor: x_img ~ K (R X + t), X in site metres, z up."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    focal_estimated: bool

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t

    @property
    def height_m(self) -> float:
        return float(self.centre[2])

    def project(self, points_3d: np.ndarray) -> np.ndarray:
        """(N,3) site points (metres, z up) -> (N,2) pixels; NaN behind the camera."""
        cam = np.asarray(points_3d, float).reshape(-1, 3) @ self.R.T + self.t
        img = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            out = img[:, :2] / img[:, 2:3]
        out[~(cam[:, 2] > 0)] = np.nan
        return out


def estimate_focal(ground_to_image: np.ndarray, principal_point: tuple[float, float]) -> float | None:
    """Focal length (pixels) from the floor homography, or None when it is not determined."""
    cx, cy = principal_point
    T = np.array([[1.0, 0, -cx], [0, 1.0, -cy], [0, 0, 1.0]])
    G = T @ ground_to_image
    G = G / np.linalg.norm(G)
    (a1, b1, c1), (a2, b2, c2) = G[:, 0], G[:, 1]
    # Unknown x = 1/f²:  (a1 a2 + b1 b2) x = -c1 c2   and   (a1²+b1²-a2²-b2²) x = c2² - c1².
    A = np.array([a1 * a2 + b1 * b2, a1**2 + b1**2 - a2**2 - b2**2])
    B = np.array([-c1 * c2, c2**2 - c1**2])
    denom = float(A @ A)
    if denom < 1e-18:
        return None
    x = float(A @ B) / denom
    if not x > 0:
        return None
    return float(1.0 / np.sqrt(x))


def pose_from_homography(image_to_ground: np.ndarray, image_size: tuple[int, int], *,
                         focal_px: float | None = None,
                         principal_point: tuple[float, float] | None = None,
                         floor_image_point: tuple[float, float] | None = None) -> CameraPose | None:
    """Camera pose with the floor at z = 0 and z up, or None when the focal cannot be estimated.

    ``floor_image_point`` is any pixel known to show the floor (default: the bottom centre);
    it fixes the sign ambiguity of the decomposition (the floor is in front of the camera).
    """
    width, height = image_size
    pp = principal_point or (width / 2.0, height / 2.0)
    G = np.linalg.inv(image_to_ground)
    estimated = focal_px is None
    f = estimate_focal(G, pp) if focal_px is None else float(focal_px)
    if f is None:
        return None
    K = np.array([[f, 0, pp[0]], [0, f, pp[1]], [0, 0, 1.0]])
    M = np.linalg.inv(K) @ G
    scale = 2.0 / (np.linalg.norm(M[:, 0]) + np.linalg.norm(M[:, 1]))
    floor_px = floor_image_point or (width / 2.0, height - 1.0)
    ground = apply(image_to_ground, np.array([floor_px]))[0]
    if not np.all(np.isfinite(ground)):
        return None
    if (M @ np.array([ground[0], ground[1], 1.0]))[2] * scale < 0:
        scale = -scale  # the floor must be in front of the camera
    r1, r2, t = M[:, 0] * scale, M[:, 1] * scale, M[:, 2] * scale
    r3 = np.cross(r1, r2)
    U, _, Vt = np.linalg.svd(np.column_stack([r1, r2, r3]))
    R = U @ Vt  # nearest rotation
    pose = CameraPose(K=K, R=R, t=t, focal_estimated=estimated)
    if pose.height_m < 0:  # mirrored ground frame: 'up' is -r1 x r2; keep heights positive
        R = R @ np.diag([1.0, 1.0, -1.0])
        pose = CameraPose(K=K, R=R, t=t, focal_estimated=estimated)
    return pose


def plane_homography(pose: CameraPose, image_to_floor: np.ndarray, height_m: float) -> np.ndarray:
    """Image → ground (x, y) under the point seen at each pixel on the plane ``height_m`` above the floor.

    A point (x, y, h) projects as K (x r1 + y r2 + t + h r3) = G_floor (x, y, 1) + h K r3, so the
    plane at height h has the ground→image homography ``G_h = s·G_floor + h·K r3 e3ᵀ``, with s the
    scale that makes the floor homography equal K [r1 r2 t] of this pose. Building it from the
    fitted floor homography (not from the orthogonalised R) keeps h = 0 exactly the floor fit.
    Crowd-counting models put a person's density at the head, so the head plane is where their
    density cells sit; mapped through it, each cell lands above the floor spot the person stands on.

    The result is scaled like ``homography.check_orientation`` does: w > 0 in front of the camera.
    """
    G = np.linalg.inv(image_to_floor)
    KinvG = np.linalg.inv(pose.K) @ G
    col = KinvG[:, 2]
    s = float(col @ pose.t) / float(col @ col)
    G_h = s * G
    G_h[:, 2] = G_h[:, 2] + height_m * (pose.K @ pose.R[:, 2])
    H = np.linalg.inv(G_h)
    return H / np.abs(H[2]).max()


def person_height_px(pose: CameraPose, ground_points: np.ndarray, height_m: float = 1.7) -> np.ndarray:
    """Image length (pixels) of a person of ``height_m`` standing at each ground point (N,2)."""
    g = np.asarray(ground_points, float).reshape(-1, 2)
    feet = pose.project(np.column_stack([g, np.zeros(len(g))]))
    heads = pose.project(np.column_stack([g, np.full(len(g), height_m)]))
    return np.hypot(*(heads - feet).T)
