"""API load benchmark: /api/zones throughput and latency, and SSE fan-out to many clients,
while the pipeline runs.

    python benchmarks/bench_api.py [--requests 2000] [--concurrency 8] [--sse-clients 100] [--json OUT]
                                   [--no-pipeline] [--idle-window 30] [--rounds 1]

Starts ``crowdsafe run`` on the demo site (the bundled video looped as a camera, the real network
counting a frame every second, the API in the same process) on 127.0.0.1 over a temporary store
pre-filled with two hours of readings, waits for the pipeline's first reading, and drives the API
from this process, so client and server do not share an event loop or a GIL. With
``--no-pipeline`` it starts ``crowdsafe serve`` instead (the API alone, for comparison).
With the pipeline it also measures counting's frames/s in an idle window (``--idle-window`` s, no
requests) and during the request burst, in the same run: what the API costs the counting. A burst
of 2,000 requests lasts a few seconds, a handful of frames at ~0.7 frames/s, so one frame more or
less moves the kept share by ~20 points: ``--rounds N`` repeats the idle window and the burst N
times in the same run and adds up frames and seconds of each kind (per round in the result too).
The CPU seconds the server process and this load generator (same machine, same cores) used during
the bursts are recorded next to it.
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
from typing import Any

import httpx

from crowdsafe.api.tokens import TokenBook
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


async def fanout(url: str, tokens: list[str], store_path: Path, clients: int, rounds: int) -> dict:
    """Each client with its own token and, as a proxy would name it, its own address: live
    streams are capped per token and per address (issue 16), and 100 streams of one token on one
    address would be refused after the first few."""
    received: list[dict[int, float]] = [dict() for _ in range(rounds)]
    connected = asyncio.Event()
    n_hello = 0
    site = demo_site()
    marks = [500.0 + r for r in range(rounds)]  # unique counts identify each round's reading

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal n_hello
        headers = {"Authorization": f"Bearer {tokens[i]}",
                   "X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"}
        async with http.stream("GET", "/api/events", headers=headers) as r:
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


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process, all its threads (this one when pid is None)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_round(url: str, token: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One idle window (no requests) then one burst; frames counted and seconds of each."""
    idle_frames = idle_s = None
    if args.pipeline and args.idle_window > 0:
        f0, t0 = frames_processed(url, token) or 0, time.monotonic()
        time.sleep(args.idle_window)
        idle_frames, idle_s = (frames_processed(url, token) or 0) - f0, time.monotonic() - t0
    frames_before = frames_processed(url, token) if args.pipeline else None
    load_before = [round(v, 2) for v in os.getloadavg()]
    server_cpu, client_cpu = cpu_seconds(server_pid), cpu_seconds()
    started = time.monotonic()
    zones = asyncio.run(load(url, token, args.requests, args.concurrency, args.time_limit))
    burst_s = time.monotonic() - started
    burst_frames = None if frames_before is None else (frames_processed(url, token) or 0) - frames_before
    return {"zones": zones, "idle_frames": idle_frames,
            "idle_s": None if idle_s is None else round(idle_s, 2),
            "burst_frames": burst_frames, "burst_s": round(burst_s, 2),
            "burst_cpu_s": {"server": round(cpu_seconds(server_pid) - server_cpu, 2),
                            "load_generator": round(cpu_seconds() - client_cpu, 2)},
            "load_before": load_before, "frames_before_burst": frames_before, "burst_started": started}


def counting_fps(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Frames/s idle and during the bursts, each summed over the rounds, and the share kept."""
    idle_f = sum(r["idle_frames"] for r in rounds if r["idle_frames"] is not None)
    idle_s = sum(r["idle_s"] for r in rounds if r["idle_s"] is not None)
    burst_f = sum(r["burst_frames"] or 0 for r in rounds)
    burst_s = sum(r["burst_s"] for r in rounds)
    idle = idle_f / idle_s if idle_s else None
    burst = burst_f / burst_s if burst_s else None
    return {"idle": None if idle is None else round(idle, 3),
            "during_burst": None if burst is None else round(burst, 3),
            "kept_pct": round(100 * burst / idle, 1) if idle and burst is not None else None,
            "idle_frames": idle_f, "idle_s": round(idle_s, 1), "burst_frames": burst_f,
            "burst_s": round(burst_s, 1), "rounds": len(rounds)}


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
    ap.add_argument("--rounds", type=int, default=1,
                    help="idle window + burst pairs in this run; frames/s adds them all up")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        store_path = state / "crowdsafe.sqlite"
        store = open_store(store_path)
        fill_demo_store(store, time.time())
        store.close()
        token = make_tokens(state)["viewer"]
        book = TokenBook(state / "tokens.json")
        sse_tokens = [book.create("viewer", f"sse-{i}")[1] for i in range(args.sse_clients)]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = (["run", str(DEMO_SITE), "--quiet", "--precision", args.precision] if args.pipeline
                   else ["serve", str(DEMO_SITE), "--no-access-log"])
        server = subprocess.Popen([sys.executable, "-m", "crowdsafe.cli.main", *command,
                                   "--state-dir", str(state), "--port", str(port),
                                   "--trusted-proxy", "127.0.0.1"],  # the fan-out's clients' addresses
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
            rounds = [measure_round(url, token, server.pid, args) for _ in range(max(1, args.rounds))]
            zones = rounds[-1]["zones"]
            frames_before = rounds[0]["frames_before_burst"]
            started = rounds[0]["burst_started"]
            results = {"zones": zones, "counting_fps": counting_fps(rounds) if args.pipeline else {
                "idle": None, "during_burst": None, "kept_pct": None}}
            if len(rounds) > 1 or args.pipeline:
                results["rounds"] = [{k: v for k, v in r.items()
                                      if k not in ("frames_before_burst", "burst_started")} for r in rounds]
            if args.sse_clients > 0:
                results["sse"] = asyncio.run(fanout(url, sse_tokens, store_path, args.sse_clients,
                                                    args.sse_rounds))
            counted = None if frames_before is None else (frames_processed(url, token) or 0) - frames_before
            results["pipeline"] = {"running": args.pipeline,
                                   "precision": args.precision if args.pipeline else None,
                                   "frames_counted_during_bench": counted,
                                   "bench_seconds": round(time.monotonic() - started, 1)}
            results["load_before"] = rounds[0]["load_before"]
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
    if c.get("rounds"):
        print(f"  over {c['rounds']} round(s): {c['idle_frames']} frames in {c['idle_s']} s idle, "
              f"{c['burst_frames']} in {c['burst_s']} s of bursts", file=sys.stderr)
    for i, r in enumerate(results.get("rounds", []), 1):
        print(f"  round {i}: idle {r['idle_frames']} frames / {r['idle_s']} s, burst {r['burst_frames']} / "
              f"{r['burst_s']} s, {r['zones']['req_per_s']} req/s; CPU s in the burst: server "
              f"{r['burst_cpu_s']['server']}, load generator {r['burst_cpu_s']['load_generator']}",
              file=sys.stderr)
    p = results["pipeline"]
    print(f"pipeline running: {p['running']}; frames counted meanwhile: {p['frames_counted_during_bench']} "
          f"in {p['bench_seconds']} s; load {results['load_before']} -> {results['load_after']}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
