"""Site dictionaries of synthetic cameras, shared by the zone-reading and background-density tests."""

from __future__ import annotations

import numpy as np

from crowdsafe.geometry.homography import apply
from tests.support.geometry import SIZE

PLAZA = [[-4.0, 0.0], [4.0, 0.0], [4.0, 8.0], [-4.0, 8.0]]
SOUTH = [[-3.0, -8.0], [3.0, -8.0], [3.0, -2.0], [-3.0, -2.0]]
CAL_GROUND = np.array([[-3.0, 0.0], [3.0, 0.0], [3.0, 6.0], [-3.0, 6.0], [0.0, 3.0], [-2.0, 8.0],
                       [2.0, 10.0]])


def camera(cam_id: str, g2i: np.ndarray) -> dict:
    return {"id": cam_id, "source": f"{cam_id}.mp4",
            "calibration": {"image_points": apply(g2i, CAL_GROUND).tolist(),
                            "ground_points": CAL_GROUND.tolist(),
                            "image_size": list(SIZE), "max_cell_area_m2": 1e6}}


def site(*cameras: dict, **extra: object) -> dict:
    return {"name": "synthetic", "cameras": list(cameras),
            "zones": [{"id": "plaza", "polygon": PLAZA, "type": "walkway"},
                      {"id": "south", "polygon": SOUTH, "type": "queue"}], **extra}
