"""Diagnosis: one simulated bottleneck case of ``benchmarks/bottleneck.py`` sampled at every phase of
its period, with the band's copies one per density cell (the pipeline's) or a fixed number.

    python tools/bottleneck_phases.py 0.8 0.3 2.0 4.0            # gap, kernel, period, camera height
    python tools/bottleneck_phases.py 0.8 0.3 2.0 4.0 --lines 8  # 8 copies, as before

The benchmark samples each case at one phase (the middle of the first period); a live camera's
phase is arbitrary, so the spread over phases is the error one run can show by chance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bottleneck import cached_simulation, pct

from crowdsafe.geometry.lines import BLUR_SIGMAS, plan_line
from crowdsafe.measure.flow import band_crossings, band_half_width_m
from crowdsafe.simulate.bottleneck import (
    RECORD_DT_S,
    VirtualCamera,
    bottleneck_geometry,
    camera_pose,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("gap", "kernel", "period", "height"):
        parser.add_argument(name, type=float)
    parser.add_argument("--lines", type=int, default=None, help="copies per side (default: one per cell)")
    parser.add_argument("--every", type=int, default=2, help="every how many 0.1 s phases")
    args = parser.parse_args()
    gap, kernel, period, height = args.gap, args.kernel, args.period, args.height
    traj = cached_simulation(gap, 200, 0 if gap == 0.8 else 1)  # the benchmark's seeds
    truth = traj.crossing_times()[0]
    geo = bottleneck_geometry(camera_pose(height), gap)
    gm = geo.cameras["cam"].ground_map
    auto = plan_line(geo, "gap", blur_m=BLUR_SIGMAS * kernel)
    assert auto is not None
    step = round(period / RECORD_DT_S)
    errors = []
    for phase in range(0, step, args.every):
        cam = VirtualCamera(geo, kernel, seed=hash((gap, height, kernel, period)) % 2**31)
        frames = list(range(phase, len(traj.positions) - 4, step))
        measured = 0.0
        for i in frames:
            density, velocity = cam.render(traj.positions[i], traj.positions[i + 1])
            c = band_crossings(density, gm.cell, velocity, gm.ground_to_image, *auto.passage,
                               auto.in_normal, period, band_half_width_m(period), lines=args.lines)
            measured += c.in_count
        t0, t1 = frames[0] * RECORD_DT_S - period / 2, frames[-1] * RECORD_DT_S + period / 2
        errors.append(pct(measured, int(((truth >= t0) & (truth < t1)).sum())))
        print(f"phase {phase * RECORD_DT_S:.1f} s: {errors[-1]:+.1f} %", flush=True)
    e = np.array(errors)
    print(f"gap {gap} m, kernel {kernel} m, every {period} s, camera {height} m, copies "
          f"{args.lines or 'one per cell'}: mean {e.mean():+.1f} %, SD {e.std():.1f} %, "
          f"from {e.min():+.1f} to {e.max():+.1f} % over {len(e)} phases")


if __name__ == "__main__":
    main()
