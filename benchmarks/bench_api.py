"""API load benchmark: /api/zones throughput and latency, and SSE fan-out to many clients,
while the pipeline runs.

    python benchmarks/bench_api.py [--requests 2000] [--concurrency 8] [--sse-clients 100] [--json OUT]
                                   [--no-pipeline] [--idle-window 30]

Starts ``crowdsafe run`` on the demo site (the bundled video looped as a camera, the real network
counting a frame every second, the API in the same process) on 127.0.0.1 over a temporary store
pre-filled with two hours of readings, waits for the pipeline's first reading, and drives the API
from this process, so client and server do not share an event loop or a GIL. With
``--no-pipeline`` it starts ``crowdsafe serve`` instead (the API alone, for comparison).
With the pipeline it also measures counting's frames/s in an idle window (``--idle-window`` s, no
requests) and during the request burst, in the same run: what the API costs the counting.
Everything is bounded: a request count, a time limit, a number of rounds. Only loopback
addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from crowdsafe.bench.demo_store import DEMO_SITE, demo_site, fill_demo_store, make_tokens, zone_row
from crowdsafe.store import open_store


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, token: str, total: int, concurrency: int, limit_s: float) -> dict:
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + limit_s
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal issued, errors
            while issued < total and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                r = await client.get("/api/zones")
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        await client.get("/api/zones")  # warm-up: connection, site view, SQLite page cache
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    ms = [v * 1000 for v in latencies]
    return {"requests": len(ms), "errors": errors, "seconds": round(elapsed, 2), "concurrency": concurrency,
            "req_per_s": round(len(ms) / elapsed, 1), "p50_ms": round(pct(ms, 50), 2),
            "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2)}


async def fanout(url: str, token: str, store_path: Path, clients: int, rounds: int) -> dict:
    received: list[dict[int, float]] = [dict() for _ in range(rounds)]
    connected = asyncio.Event()
    n_hello = 0
    site = demo_site()
    marks = [500.0 + r for r in range(rounds)]  # unique counts identify each round's reading

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal n_hello
        async with http.stream("GET", "/api/events", headers={"Authorization": f"Bearer {token}"}) as r:
            r.raise_for_status()
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "hello":
                        n_hello += 1
                        if n_hello == clients:
                            connected.set()
                elif line.startswith("data:") and event == "zone":
                    data = json.loads(line[5:])
                    if data["count"] in marks:
                        received[marks.index(data["count"])][i] = time.time()
                        if len(received[-1]) == clients:
                            return

    store = open_store(store_path)
    limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=60), limits=limits) as http:
        tasks = [asyncio.create_task(client(i, http)) for i in range(clients)]
        t0 = time.perf_counter()
        await asyncio.wait_for(connected.wait(), 60)
        connect_s = time.perf_counter() - t0
        delays: list[float] = []
        for r in range(rounds):
            await asyncio.sleep(1.3)
            written = time.time()
            store.write("zone_readings", [zone_row(site, "walkway", written, marks[r])])
            limit = time.monotonic() + 10
            while len(received[r]) < clients and time.monotonic() < limit:
                await asyncio.sleep(0.02)
            delays += [(t - written) * 1000 for t in received[r].values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    store.close()
    delivered = sum(len(r) for r in received)
    return {"clients": clients, "rounds": rounds, "connect_all_s": round(connect_s, 2),
            "delivered": delivered, "expected": clients * rounds,
            "delay_p50_ms": round(pct(delays, 50), 1), "delay_p99_ms": round(pct(delays, 99), 1),
            "delay_max_ms": round(max(delays), 1),
            "note": "delay = store write to client receipt; includes the 1 s store poll"}


def frames_processed(url: str, token: str) -> int | None:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    m = re.search(r'crowdsafe_frames_processed_total\{camera="view001"\} (\S+)', text)
    return int(float(m.group(1))) if m else None


def wait_for_pipeline(url: str, token: str, server: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("crowdsafe run ended before counting a frame")
        if (frames_processed(url, token) or 0) >= 1:
            return
        time.sleep(0.5)
    raise SystemExit("the pipeline counted no frame within the time limit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--sse-clients", type=int, default=100)
    ap.add_argument("--sse-rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="run the demo pipeline in the server process (crowdsafe run) or not (serve)")
    ap.add_argument("--precision", default="int8", help="of the pipeline's engine")
    ap.add_argument("--idle-window", type=float, default=30.0,
                    help="seconds of counting without requests, measured before the burst (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        store_path = state / "crowdsafe.sqlite"
        store = open_store(store_path)
        fill_demo_store(store, time.time())
        store.close()
        token = make_tokens(state)["viewer"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = (["run", str(DEMO_SITE), "--quiet", "--precision", args.precision] if args.pipeline
                   else ["serve", str(DEMO_SITE), "--no-access-log"])
        server = subprocess.Popen([sys.executable, "-m", "crowdsafe.cli.main", *command,
                                   "--state-dir", str(state), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(150):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise SystemExit("server did not start")
            if args.pipeline:
                wait_for_pipeline(url, token, server)
            idle = None
            if args.pipeline and args.idle_window > 0:
                f0, t0 = frames_processed(url, token) or 0, time.monotonic()
                time.sleep(args.idle_window)
                idle = ((frames_processed(url, token) or 0) - f0) / (time.monotonic() - t0)
            frames_before = frames_processed(url, token) if args.pipeline else None
            started = time.monotonic()
            load_before = [round(v, 2) for v in os.getloadavg()]
            zones = asyncio.run(load(url, token, args.requests, args.concurrency, args.time_limit))
            burst = None
            if frames_before is not None:
                burst = ((frames_processed(url, token) or 0) - frames_before) / (time.monotonic() - started)
            results = {"zones": zones, "counting_fps": {
                "idle": None if idle is None else round(idle, 3),
                "during_burst": None if burst is None else round(burst, 3),
                "kept_pct": round(100 * burst / idle, 1) if idle and burst is not None else None}}
            if args.sse_clients > 0:
                results["sse"] = asyncio.run(fanout(url, token, store_path, args.sse_clients,
                                                    args.sse_rounds))
            counted = None if frames_before is None else (frames_processed(url, token) or 0) - frames_before
            results["pipeline"] = {"running": args.pipeline,
                                   "precision": args.precision if args.pipeline else None,
                                   "frames_counted_during_bench": counted,
                                   "bench_seconds": round(time.monotonic() - started, 1)}
            results["load_before"] = load_before
            results["load_after"] = [round(v, 2) for v in os.getloadavg()]
        finally:
            server.terminate()
            server.wait(15)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    z = results["zones"]
    print(f"/api/zones: {z['req_per_s']} req/s, p50 {z['p50_ms']} ms, p99 {z['p99_ms']} ms "
          f"({z['requests']} requests, {z['concurrency']} concurrent, {z['errors']} errors)", file=sys.stderr)
    if "sse" in results:
        s = results["sse"]
        print(f"SSE fan-out: {s['delivered']}/{s['expected']} delivered to {s['clients']} clients, "
              f"delay p50 {s['delay_p50_ms']} ms, p99 {s['delay_p99_ms']} ms", file=sys.stderr)
    c = results["counting_fps"]
    print(f"counting: {c['idle']} frames/s idle, {c['during_burst']} during the burst "
          f"({c['kept_pct']} % kept)", file=sys.stderr)
    p = results["pipeline"]
    print(f"pipeline running: {p['running']}; frames counted meanwhile: {p['frames_counted_during_bench']} "
          f"in {p['bench_seconds']} s; load {results['load_before']} -> {results['load_after']}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
