"""Resident memory of one counter as it counts images of one size, then of a second size.

    python benchmarks/shape_rss.py

Why: the soak's early RSS step (~+115 MB at ~150 s) is when the background check first counts the
ring's median, which is downscaled to 640 px (768x576 camera -> 640x480). The OpenVINO engine
compiles one model per input shape (``OpenVinoEngine``, at most ``shapes_cached`` of them), so the
second size costs a second compiled network once. This isolates that step from the runner.
"""

from __future__ import annotations

import numpy as np

from crowdsafe.bench.machine import rss_mb
from crowdsafe.counting.batch import make_counter
from crowdsafe.counting.engines import EngineSpec


def main() -> None:
    counter = make_counter(EngineSpec(engine="openvino", precision="int8", threads=1))
    rng = np.random.default_rng(0)
    camera = rng.integers(0, 255, (576, 768, 3), np.uint8)
    median = rng.integers(0, 255, (480, 640, 3), np.uint8)
    print(f"start {rss_mb():.0f} MB")
    for label, images in (("camera size 768x576", [camera]), ("median size 640x480", [median]),
                          ("both", [camera, median])):
        for i in range(3):
            for image in images:
                counter.count(image)
            print(f"{label} #{i}: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
