"""Site dictionaries of synthetic cameras, shared by the zone-reading and background-density tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import yaml

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


#: A 4 m square on the demo camera's floor, around image point (400, 360): part of the frame.
SQUARE = [[-14.8, -11.4], [-10.8, -11.4], [-10.8, -7.4], [-14.8, -7.4]]


def demo_part(tmp_path: Path, zones: list[dict], lines: list[dict] | None = None,
              **camera_extra: object) -> Path:
    """The demo camera (no tuning, absolute source) watching only ``zones`` and ``lines``.

    For region tests: a site whose zones cover part of the frame, on the real demo view.
    """
    demo = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))
    data = yaml.safe_load(demo.read_text())
    cam = data["cameras"][0]
    cam.pop("tuning", None)
    cam.update(source=str(demo.parent / cam["source"]), **camera_extra)
    data.update(zones=zones, lines=lines or [])
    data.pop("staffing", None)
    path = tmp_path / "part_site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
