"""Image→ground homography from point pairs, its error in metres, and refusal of bad point sets.

Why and how: docs/design-notes.md, ``crowdsafe.geometry.homography``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

#: Points closer than this fraction of the point set's extent count as the same point.
DUPLICATE_TOL = 1e-4
#: A point within this fraction of the extent from a line through two others is on that line.
COLLINEAR_TOL = 2e-3


class CalibrationError(ValueError):
    """The point pairs cannot define a usable floor homography; ``field`` names the culprit list."""

    def __init__(self, message: str, field: str = "image_points") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class HomographyFit:
    """A fitted image→ground homography and how well it reproduces its own points."""

    matrix: np.ndarray  # 3x3 image -> ground, scaled so w > 0 on the floor
    image_points: np.ndarray  # (N, 2) pixels
    ground_points: np.ndarray  # (N, 2) metres
    inliers: np.ndarray  # (N,) bool
    errors_m: np.ndarray  # (N,) ground distance between mapped image point and its ground point

    @property
    def inverse(self) -> np.ndarray:
        """Ground → image, scaled so w > 0 for floor points in front of the camera."""
        inv = np.linalg.inv(self.matrix)
        return inv / np.abs(inv[2]).max()

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def rms_m(self) -> float:
        """RMS reprojection error of the inliers, metres on the ground."""
        return float(np.sqrt(np.mean(self.errors_m[self.inliers] ** 2)))

    @property
    def max_m(self) -> float:
        """Largest inlier reprojection error, metres on the ground."""
        return float(self.errors_m[self.inliers].max())


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 3x3 homography; NaN where w <= 0 (behind the horizon)."""
    pts = np.asarray(points, dtype=np.float64)
    flat = pts.reshape(-1, 2)
    hom = flat @ matrix[:, :2].T + matrix[:, 2]
    w = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w[:, None]
    out[~(w > 0)] = np.nan
    return out.reshape(pts.shape)


def homography_jacobian(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2, 2) d(output)/d(input) of a 3x3 homography at (N, 2) input points."""
    pts = np.asarray(points, float).reshape(-1, 2)
    hom = pts @ matrix[:, :2].T + matrix[:, 2]
    w = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w[:, None]
        jac = (matrix[None, :2, :2] - out[:, :, None] * matrix[None, 2:3, :2]) / w[:, None, None]
    return jac


def horizon_w(matrix: np.ndarray, image_points: np.ndarray) -> np.ndarray:
    """w = H[2]·(u, v, 1) for image points: positive on the floor side of the horizon."""
    pts = np.asarray(image_points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[2, :2] + matrix[2, 2]


def jacobian_det(matrix: np.ndarray, image_points: np.ndarray) -> np.ndarray:
    """det of d(ground)/d(image) at image points: det(H) / w³ (sign gives the handedness)."""
    return float(np.linalg.det(matrix)) / horizon_w(matrix, image_points) ** 3


def _extent(points: np.ndarray) -> float:
    return float(max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), 1e-12))


def _check_duplicates(points: np.ndarray, field: str) -> None:
    tol = DUPLICATE_TOL * _extent(points)
    for i, j in itertools.combinations(range(len(points)), 2):
        if np.hypot(*(points[i] - points[j])) <= tol:
            raise CalibrationError(f"{field}: points {i} and {j} are duplicates ({points[i].tolist()}); "
                                   "each pair must be a different floor point", field)


def _max_on_one_line(points: np.ndarray) -> tuple[int, tuple[int, int]]:
    """How many points lie on the best line through two of them, and that pair."""
    tol = COLLINEAR_TOL * _extent(points)
    best, best_pair = 2, (0, 1)
    for i, j in itertools.combinations(range(len(points)), 2):
        d = points[j] - points[i]
        rel = points - points[i]
        dist = np.abs(d[0] * rel[:, 1] - d[1] * rel[:, 0]) / np.hypot(*d)
        n = int((dist <= tol).sum())
        if n > best:
            best, best_pair = n, (i, j)
    return best, best_pair


def _check_general_position(points: np.ndarray, field: str) -> None:
    """A homography needs 4 points with no 3 collinear; with more, all but one on a line is not enough."""
    n_line, (i, j) = _max_on_one_line(points)
    if n_line == len(points):
        raise CalibrationError(f"{field}: need at least 4 non-collinear points; all {len(points)} points lie "
                               "on one line", field)
    if n_line >= len(points) - 1:
        raise CalibrationError(f"{field}: need at least 4 non-collinear points; {n_line} of the "
                               f"{len(points)} "
                               f"points lie on one line (through points {i} and {j}), so the floor plane is "
                               "not determined; add points off that line", field)


def check_point_pairs(image_points: np.ndarray, ground_points: np.ndarray) -> None:
    """Refuse point sets that cannot determine a homography: too few, duplicated, collinear."""
    if image_points.shape != ground_points.shape or image_points.ndim != 2 or image_points.shape[1] != 2:
        raise CalibrationError(f"ground_points: {len(ground_points)} ground points for {len(image_points)} "
                               "image points; they must be [x, y] pairs matching one to one", "ground_points")
    if len(image_points) < 4:
        raise CalibrationError(f"image_points: need at least 4 non-collinear points, got {len(image_points)}")
    if not (np.all(np.isfinite(image_points)) and np.all(np.isfinite(ground_points))):
        raise CalibrationError("image_points: points must be finite numbers")
    for field, pts in (("image_points", image_points), ("ground_points", ground_points)):
        _check_duplicates(pts, field)
    for field, pts in (("image_points", image_points), ("ground_points", ground_points)):
        _check_general_position(pts, field)


def check_orientation(matrix: np.ndarray, floor_image_points: np.ndarray) -> np.ndarray:
    """Scale H so the floor has w > 0 and refuse a horizon inside the floor or a mirrored fit."""
    w = horizon_w(matrix, floor_image_points)
    if np.all(w < 0):
        matrix = -matrix
        w = -w
    if not np.all(w > 0):
        pos, neg = np.flatnonzero(w > 0), np.flatnonzero(w <= 0)
        minority = neg if len(neg) <= len(pos) else pos
        h = matrix[2] / np.hypot(*matrix[2, :2])
        raise CalibrationError(
            "image_points: the horizon of the fitted floor plane (image line "
            f"{h[0]:.3g}·u + {h[1]:.3g}·v + {h[2]:.3g} = 0) runs through the floor points: points "
            f"{minority.tolist()} lie on the other side of it, so they cannot all be on one floor; "
            "check for swapped pairs or points off the floor (walls, heads)")
    if np.linalg.det(matrix) > 0:
        raise CalibrationError(
            "ground_points: the fit is mirrored: the ground points have the opposite handedness of the "
            "image (as seen from above, x right and y up the page, a camera over the floor cannot produce "
            "this); check for swapped x and y, a flipped axis, or points listed in mirrored order",
            "ground_points")
    return matrix / np.abs(matrix[2]).max()


def fit_homography(image_points: np.ndarray | list, ground_points: np.ndarray | list, *,
                   ransac_threshold_m: float = 0.5,
                   floor_image_points: np.ndarray | None = None) -> HomographyFit:
    """Fit image→ground from >= 4 pairs (RANSAC beyond 4) or raise CalibrationError saying why not.

    ``floor_image_points`` are further image points known to be on the floor (e.g. the image of
    the zones); they join the calibration points in the horizon check.
    """
    img = np.asarray(image_points, dtype=np.float64).reshape(-1, 2)
    gnd = np.asarray(ground_points, dtype=np.float64).reshape(-1, 2)
    check_point_pairs(img, gnd)
    if len(img) == 4:
        matrix, mask = cv2.findHomography(img, gnd, 0)
    else:
        matrix, mask = cv2.findHomography(img, gnd, cv2.RANSAC, ransacReprojThreshold=ransac_threshold_m,
                                          maxIters=5000, confidence=0.999)
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-300:
        raise CalibrationError("image_points: no homography fits these pairs (degenerate configuration)")
    inliers = mask.ravel().astype(bool) if mask is not None else np.ones(len(img), bool)
    if inliers.sum() < 4:
        raise CalibrationError(f"image_points: only {int(inliers.sum())} of {len(img)} pairs agree within "
                               f"{ransac_threshold_m} m; at least 4 consistent pairs are needed")
    floor = img if floor_image_points is None else np.vstack([img, np.asarray(floor_image_points, float)])
    matrix = check_orientation(matrix, floor)
    errors = np.hypot(*(apply(matrix, img) - gnd).T)
    return HomographyFit(matrix=matrix, image_points=img, ground_points=gnd, inliers=inliers,
                         errors_m=np.nan_to_num(errors, nan=np.inf))
