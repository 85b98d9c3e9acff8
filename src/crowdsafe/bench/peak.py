"""This machine's practical fp32 peak, measured rather than taken from a datasheet.

Cloud vCPUs run at unknown clocks and may share cores, so a datasheet peak would flatter or
insult the engines. A large float32 matmul (sgemm through numpy's BLAS on all cores) is the
best dense fp32 throughput this box delivers, and the denominator of our "% of peak".
"""

from __future__ import annotations

import time

import numpy as np


def sgemm_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n float32 matmul (2*n^3 FLOPs each)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9
