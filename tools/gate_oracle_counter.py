"""Diagnosis only: ``crowdsafe eval-site`` with the real counter's density but the annotated head
velocity in place of the optical flow (issue 25): how far an unbiased velocity alone would take the
live gate reading with the counter that runs.

    python tools/gate_oracle_counter.py eval-site src/crowdsafe/data/demo_site.yaml --camera view001 \\
        --feet ../shared/data/video/vtest_points.json --frames 0:795:10 --json /tmp/oracle10.json

The arguments are eval-site's (the heads are read beside ``--feet``). The velocity field is
``gate_oracle_velocity.py``'s "oracle" (each pixel within 60 px of an annotated head gets that
head's annotated motion to the next frame), read at the head itself; the pipeline is eval-site's,
patched here and nowhere else. The annotations are ground truth for diagnosis; nothing is fitted
to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gate_oracle_velocity import head_velocity_field  # tools/ is on the path when run as a script

import crowdsafe.evaluation.site as evaluation_site
from crowdsafe.cli.main import app
from crowdsafe.evaluation.site import load_frame_points
from crowdsafe.runtime.camera import Sample
from crowdsafe.runtime.pipeline import FrameOutput, FramePipeline


class OraclePipeline(FramePipeline):
    """eval-site's pipeline with the annotated head velocity as its flow."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, flow=self.oracle, **kwargs)  # type: ignore[arg-type]
        feet = Path(sys.argv[sys.argv.index("--feet") + 1])
        self.heads = load_frame_points(feet.with_name("vtest_heads.json"))  # beside the feet
        self.k = 0
        self._bodies = {cid: None for cid in self.geometry.cameras}  # read at the head itself

    def _flow_box(self, cid: str, *args: object) -> tuple[int, int, int, int]:
        """The whole frame: the annotated heads are in frame coordinates, not a box's."""
        w, h = self.geometry.cameras[cid].ground_map.image_size
        return 0, 0, w, h

    def oracle(self, image: np.ndarray, pair: np.ndarray, dt: float) -> np.ndarray:
        return head_velocity_field(self.heads.get(self.k), self.heads.get(self.k + 1), image.shape[:2], dt)

    def process(self, sample: Sample) -> FrameOutput:
        self.k = sample.frame_index if sample.frame_index is not None else 0
        return super().process(sample)


if __name__ == "__main__":
    evaluation_site.FramePipeline = OraclePipeline  # type: ignore[misc]
    app(args=sys.argv[1:], prog_name="crowdsafe")
