"""The run's summary line: frames/s as sampled, and beside it what the pipeline could take."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from crowdsafe.cli.run import summary_lines
from crowdsafe.config.site import load_site
from crowdsafe.counting.counter import DensityResult, EveryCamera
from crowdsafe.runtime.core import RunnerConfig, prepare_site
from crowdsafe.runtime.local import local_runner
from crowdsafe.store.store import open_store
from tests.support.runner import demo_site

COUNT_S = 0.1


class SlowCounter:
    """A counter that takes a known time per frame (an engine ten times as fast as the sampling)."""

    def count(self, image_bgr: np.ndarray) -> DensityResult:
        time.sleep(COUNT_S)
        h, w = image_bgr.shape[:2]
        return DensityResult(np.full((h // 8, w // 8), 1e-3, np.float32), h, w)


def test_the_summary_shows_the_sampled_rate_the_capacity_and_no_drops(tmp_path: Path):
    prepared = prepare_site(load_site(demo_site(tmp_path, every="1s")))
    store = open_store(str(tmp_path / "s.sqlite"))
    config = RunnerConfig(state_dir=tmp_path / "state", duration_s=6.0, health_every_s=2.0)
    summary = local_runner(prepared, store, EveryCamera(SlowCounter()), config).run()
    store.close()
    n = summary.frames_total
    assert n >= 4 and sum(summary.dropped.values()) == 0  # the engine keeps up with one sample a second
    assert summary.fps <= 1.3  # the sampling caps what is counted...
    # ...while each frame's stages (counting COUNT_S of them) took a fraction of its second: the
    # pipeline could take several times the sampling
    assert n * COUNT_S <= summary.engine_s <= summary.busy_s < summary.seconds / 2
    # the stages beside the counting share the cores with it: they cost a frame their time / cores
    beside = summary.busy_s - summary.engine_s
    assert beside > 0 and summary.cores >= 1
    assert summary.capacity_fps == n / (summary.engine_s + beside / summary.cores)
    assert n / summary.busy_s <= summary.capacity_fps <= n / summary.engine_s
    first = summary_lines(summary)[0]
    assert f"{summary.fps:.2f} frames/s of " in first
    assert f"capacity {summary.capacity_fps:.2f} frames/s" in first
    assert "0 samples dropped (engine busy)" in first
