"""Soak of the demo site: `crowdsafe run` for a long time with its RSS sampled, and wrk load on the API.

    python benchmarks/soak.py --duration 1800 [--sample-every 5] [--threads 1] [--wrk-every 300]
                              [--wrk-seconds 20] [--out DIR]

Starts ``crowdsafe run src/crowdsafe/data/demo_site.yaml`` under ``nice -n 19`` (the bundled video
looped as a live camera, the real network, SQLite store, the API in the same process) on a
temporary state dir, samples the process's resident memory (VmRSS from /proc) every few seconds,
and every ``--wrk-every`` seconds drives the API from a second process with wrk (Debian package
``wrk``) on 127.0.0.1: requests/s, p50/p99 latency and non-2xx answers, per endpoint, while the
pipeline runs. At the end: a least-squares line through RSS over time after the warm-up, i.e. the
growth rate in MB per hour (0 within noise means no leak), plus what the run counted.
``MALLOC_*`` variables (e.g. ``MALLOC_ARENA_MAX=2``) and ``LD_PRELOAD`` (e.g. jemalloc) pass through
to the run and are recorded. ``--tracemalloc-every S`` runs it under tracemalloc (through
``tracemalloc_run.py``) and records the traced Python heap and its biggest growth every S seconds:
a flat Python heap under a rising RSS is allocator/native growth, not a Python leak.

Not part of CI: it takes as long as you ask. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from crowdsafe.bench.machine import rss_mb

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "crowdsafe" / "data" / "demo_site.yaml"
ENDPOINTS = ("/api/zones", "/api/zones/walkway/history", "/metrics")



def fit_slope_mb_per_h(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, float]:
    """Least-squares RSS = a + b t over the samples after the warm-up; b in MB/hour, with its std error."""
    kept = [(t, m) for t, m in samples if t >= warmup_s]
    if len(kept) < 3:
        return {"slope_mb_per_h": float("nan"), "stderr_mb_per_h": float("nan"), "n": len(kept)}
    t = np.array([s[0] for s in kept]) / 3600.0
    m = np.array([s[1] for s in kept])
    (slope, intercept), cov = np.polyfit(t, m, 1, cov=True)
    residual = m - (slope * t + intercept)
    return {"slope_mb_per_h": float(slope), "stderr_mb_per_h": float(np.sqrt(cov[0, 0])), "n": len(kept),
            "residual_sd_mb": float(residual.std()), "span_h": float(t[-1] - t[0])}


def tracemalloc_summary(traces: list[dict[str, object]], warmup_s: float) -> dict[str, object] | None:
    """Slope of the traced Python heap after the warm-up, next to the RSS slope, plus the last growth list.

    Python heap flat while RSS climbs means the growth is native/allocator memory, not a Python leak.
    """
    if not traces:
        return None
    heap = [(float(r["t_s"]), float(r["traced_mb"])) for r in traces]  # type: ignore[arg-type]
    last = traces[-1]
    return {"dumps": len(traces), "traced_first_mb": heap[0][1], "traced_last_mb": heap[-1][1],
            "overhead_last_mb": last["tracemalloc_overhead_mb"],
            "traced_fit": fit_slope_mb_per_h(heap, warmup_s),
            "top_growth_last": last["top_growth"][:10]}  # type: ignore[index]


def wrk(url: str, token: str, seconds: int, connections: int) -> dict[str, float | str]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          "-H", f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"url": url, "requests": int(total.group(1)) if total else 0,
            "rps": float(rps.group(1)) if rps else float("nan"), "p50_ms": latency("50%"),
            "p90_ms": latency("90%"), "p99_ms": latency("99%"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


class Lines:
    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if m := re.search(pattern, line):
                return m
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds of running (default 30 min)")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds left out of the RSS fit")
    ap.add_argument("--threads", type=int, default=1, help="inference threads (keep the machine usable)")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--wrk-every", type=float, default=300.0, help="seconds between wrk bursts; 0: none")
    ap.add_argument("--wrk-seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", type=Path, help="folder for rss.csv and soak.json")
    ap.add_argument("--result", type=Path, help="also write the result JSON to this file")
    ap.add_argument("--tracemalloc-every", type=float, default=0.0,
                    help="seconds between tracemalloc growth dumps (0: off; runs via tracemalloc_run.py)")
    ap.add_argument("--tracemalloc-frames", type=int, default=10)
    args = ap.parse_args()
    if args.wrk_every and shutil.which("wrk") is None:
        ap.error("wrk not found: apt-get install -y wrk (or --wrk-every 0)")

    sys.path.insert(0, str(ROOT / "src"))
    from crowdsafe.api.tokens import TokenBook

    with tempfile.TemporaryDirectory(prefix="crowdsafe-soak-") as tmp:
        state = Path(tmp) / "state"
        token = TokenBook(state / "tokens.json").create("viewer")[1]
        site = Path(tmp) / "site.yaml"
        site.write_text(DEMO.read_text().replace("source: vtest.avi", f"source: {DEMO.parent / 'vtest.avi'}"))
        trace_file = Path(tmp) / "tracemalloc.jsonl"
        # Tracing only through the wrapper, so the CLI's own path carries no tracemalloc cost.
        wrapper = ROOT / "benchmarks" / "tracemalloc_run.py"
        entry = (["-X", f"tracemalloc={args.tracemalloc_frames}", str(wrapper), str(trace_file),
                  str(args.tracemalloc_every), "--"]
                 if args.tracemalloc_every else ["-m", "crowdsafe.cli.main"])
        cmd = ["nice", "-n", "19", sys.executable, *entry, "run", str(site),
               "--state-dir", str(state), "--duration", str(args.duration), "--quiet", "--precision",
               args.precision, "--threads", str(args.threads), "--port", "0", "--health-every", "10"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        samples: list[tuple[float, float]] = []
        bursts: list[dict[str, object]] = []
        next_burst = started + 60.0
        url = None
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if math.isfinite(mb := rss_mb(proc.pid)):
                    samples.append((now - started, mb))
                if url is None and (m := err.find(r"dashboard and API: (http://[\d.:\[\]]+)/")):
                    url = m.group(1)
                if args.wrk_every and url and now >= next_burst:
                    for path in ENDPOINTS:
                        burst = wrk(url + path, token, args.wrk_seconds, args.connections)
                        burst["at_s"] = round(time.monotonic() - started)
                        bursts.append(burst)
                        print(json.dumps(burst), flush=True)
                    next_burst = time.monotonic() + args.wrk_every
                time.sleep(args.sample_every)
        except KeyboardInterrupt:
            proc.terminate()
        proc.wait(120)
        time.sleep(0.5)
        seconds = time.monotonic() - started
        traces = ([json.loads(ln) for ln in trace_file.read_text().splitlines() if ln.strip()]
                  if trace_file.exists() else [])
    fit = fit_slope_mb_per_h(samples, args.warmup)
    summary_lines = [ln for ln in out.lines if ln.startswith(("ran ", "store:", "camera "))]
    # Allocator settings change RSS growth (glibc arenas), so a result says which were in force.
    # LD_PRELOAD too: a jemalloc run (LD_PRELOAD=libjemalloc.so.2) replaces glibc malloc altogether.
    malloc_env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"}
    result = {"command": " ".join(cmd), "malloc_env": malloc_env, "returncode": proc.returncode,
              "seconds": round(seconds),
              "rss_first_mb": samples[0][1] if samples else None,
              "rss_after_warmup_mb": next((m for t, m in samples if t >= args.warmup), None),
              "rss_last_mb": samples[-1][1] if samples else None,
              "rss_max_mb": max((m for _, m in samples), default=None), "fit": fit,
              "wrk": bursts, "run_summary": summary_lines, "stderr_tail": err.lines[-5:],
              "tracemalloc": tracemalloc_summary(traces, args.warmup)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rss.csv").write_text("t_s,rss_mb\n" + "".join(f"{t:.1f},{m:.1f}\n" for t, m in samples))
        (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
        if traces:
            (args.out / "tracemalloc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in traces))
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
