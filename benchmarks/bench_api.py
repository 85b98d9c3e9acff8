"""API load benchmark: cheap routes' throughput and latency (/api/zones, /health), and SSE fan-out
to many clients, while the pipeline runs.

    python benchmarks/bench_api.py [--requests 2000] [--concurrency 8] [--sse-clients 100] [--json OUT]
                                   [--no-pipeline] [--idle-window 30] [--rounds 1]
                                   [--api-workers 0 1 2] [--routes /api/zones /health]

Starts ``crowdsafe run`` on the demo site (the bundled video looped as a camera, the real network
counting a frame every second, the API in ``--api-workers`` processes of its own, or with 0 in
threads of the counting process) on 127.0.0.1 over a temporary store pre-filled with two hours of
readings, waits for the pipeline's first reading, and drives the API from this process, so client
and server do not share an event loop or a GIL; one such run per ``--api-workers`` value, one after
the other, in the same invocation. Each burst is ``--requests`` GETs of one route over
``--concurrency`` keep-alive connections, written and read as raw HTTP/1.1 (a load generator that
costs little CPU, since it shares the cores). With ``--no-pipeline`` it starts ``crowdsafe serve``
instead (the API alone, for comparison).
With the pipeline it also measures counting's frames/s in an idle window (``--idle-window`` s, no
requests) and during the request burst, in the same run: what the API costs the counting. A burst
of 2,000 requests lasts a few seconds, a handful of frames at ~0.7 frames/s, so one frame more or
less moves the kept share by ~20 points: ``--rounds N`` repeats the idle window and the burst N
times in the same run and adds up frames and seconds of each kind (per round in the result too).
The CPU seconds the server processes (counting and API workers apart) and this load generator
(same machine, same cores) used during the bursts are recorded next to it.
Everything is bounded: a request count, a time limit, a number of rounds. Only loopback
addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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
import yaml

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


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(int(length.group(1)))
    return status


async def load(url: str, token: str, total: int, concurrency: int, limit_s: float,
               route: str = "/api/zones", rate: float | None = None) -> dict:
    """``total`` GETs of ``route`` over ``concurrency`` keep-alive connections; latency per request.
    With ``rate``, requests are sent on a fixed schedule (open loop, ``rate`` a second in all) and
    each latency counts from its scheduled time, so a stalled server is not excused by the client
    waiting for it (no coordinated omission); without, each connection sends as fast as answered."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = (f"GET {route} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + limit_s
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offset: float) -> None:
        nonlocal issued, errors
        due = time.perf_counter() + offset
        while issued < total and time.perf_counter() < deadline:
            issued += 1
            if rate:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                t0 = due
                due += concurrency / rate
            else:
                t0 = time.perf_counter()
            status = await _get(reader, writer, request)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors += 1

    try:
        for reader, writer in conns:  # warm-up: each connection, the site view, SQLite's page cache
            await _get(reader, writer, request)
        start = time.perf_counter()
        await asyncio.gather(*(worker(r, w, i / rate if rate else 0.0) for i, (r, w) in enumerate(conns)))
        elapsed = time.perf_counter() - start
    finally:
        for _, writer in conns:
            writer.close()
    ms = [v * 1000 for v in latencies]
    return {"_ms": ms, "route": route, "offered_per_s": rate, "requests": len(ms), "errors": errors,
            "seconds": round(elapsed, 2),
            "concurrency": concurrency,
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
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The API worker processes of a `crowdsafe run` (its direct children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def cpu_now(server_pid: int) -> dict[str, float]:
    return {"counting_process": cpu_seconds(server_pid),
            "api_workers": sum(cpu_seconds(c) for c in children(server_pid)), "load_generator": cpu_seconds()}


def measure_round(url: str, token: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One idle window (no requests) then one burst per route; frames counted and seconds of each."""
    idle_frames = idle_s = None
    if args.pipeline and args.idle_window > 0:
        f0, t0 = frames_processed(url, token) or 0, time.monotonic()
        time.sleep(args.idle_window)
        idle_frames, idle_s = (frames_processed(url, token) or 0) - f0, time.monotonic() - t0
    bursts = []
    load_before = [round(v, 2) for v in os.getloadavg()]
    for route in args.routes:
        frames_before = frames_processed(url, token) if args.pipeline else None
        cpu_before = cpu_now(server_pid)
        started = time.monotonic()
        result = asyncio.run(load(url, token, args.requests, args.concurrency, args.time_limit, route,
                                  args.rate))
        burst_s = time.monotonic() - started
        frames = None if frames_before is None else (frames_processed(url, token) or 0) - frames_before
        cpu_after = cpu_now(server_pid)
        bursts.append({"load": result, "frames": frames, "seconds": round(burst_s, 2),
                       "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}})
    return {"idle_frames": idle_frames, "idle_s": None if idle_s is None else round(idle_s, 2),
            "bursts": bursts, "load_before": load_before}


def counting_fps(rounds: list[dict[str, Any]], route: str | None = None) -> dict[str, float | None]:
    """Frames/s idle and during the bursts (of one route, or all), each summed over the rounds,
    and the share kept."""
    idle_f = sum(r["idle_frames"] for r in rounds if r["idle_frames"] is not None)
    idle_s = sum(r["idle_s"] for r in rounds if r["idle_s"] is not None)
    bursts = [b for r in rounds for b in r["bursts"] if route is None or b["load"]["route"] == route]
    burst_f = sum(b["frames"] or 0 for b in bursts)
    burst_s = sum(b["seconds"] for b in bursts)
    idle = idle_f / idle_s if idle_s else None
    burst = burst_f / burst_s if burst_s else None
    return {"idle": None if idle is None else round(idle, 3),
            "during_burst": None if burst is None else round(burst, 3),
            "kept_pct": round(100 * burst / idle, 1) if idle and burst is not None else None,
            "idle_frames": idle_f, "idle_s": round(idle_s, 1), "burst_frames": burst_f,
            "burst_s": round(burst_s, 1), "rounds": len(rounds)}


def route_totals(rounds: list[dict[str, Any]], route: str) -> dict[str, Any]:
    """One route's requests over every round: rate over the bursts' time, percentiles over all."""
    loads = [b["load"] for r in rounds for b in r["bursts"] if b["load"]["route"] == route]
    ms = [v for x in loads for v in x["_ms"]]
    seconds = sum(x["seconds"] for x in loads)
    return {"route": route, "requests": len(ms), "errors": sum(x["errors"] for x in loads),
            "seconds": round(seconds, 2), "concurrency": loads[0]["concurrency"],
            "offered_per_s": loads[0]["offered_per_s"],
            "req_per_s": round(len(ms) / seconds, 1), "p50_ms": round(pct(ms, 50), 2),
            "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2),
            "req_per_s_rounds": [x["req_per_s"] for x in loads],
            "p99_ms_rounds": [x["p99_ms"] for x in loads]}


def wait_for_pipeline(url: str, token: str, server: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("crowdsafe run ended before counting a frame")
        if (frames_processed(url, token) or 0) >= 1:
            return
        time.sleep(0.5)
    raise SystemExit("the pipeline counted no frame within the time limit")


def sampled_site(folder: Path, every: str) -> Path:
    """The demo site sampled every ``every`` (sources and tuning by absolute path): sampled faster
    than the engine counts, counting is bound by the engine, not by the camera's clock, so what a
    burst takes from it shows in frames/s instead of in idle time between samples."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    for cam in data["cameras"]:
        cam["source"] = str(DEMO_SITE.parent / cam["source"])
        if cam.get("tuning"):
            cam["tuning"] = str(DEMO_SITE.parent / cam["tuning"])
        cam["sampling"] = {"every": every}
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_setting(args: argparse.Namespace, workers: int | None) -> dict[str, Any]:
    """Start the server with ``workers`` API processes (None: `crowdsafe serve`), measure, stop it."""
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
        site_file = DEMO_SITE if args.sample_every is None else sampled_site(state, args.sample_every)
        command = (["run", str(site_file), "--quiet", "--precision", args.precision,
                    "--api-workers", str(workers)] if args.pipeline
                   else ["serve", str(DEMO_SITE), "--no-access-log"])
        server = subprocess.Popen([sys.executable, "-m", "crowdsafe.cli.main", *command,
                                   "--state-dir", str(state), "--port", str(port),
                                   "--trusted-proxy", "127.0.0.1"],  # the fan-out's clients' addresses
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise SystemExit("server did not start")
            if args.pipeline:
                wait_for_pipeline(url, token, server)
            frames_before = frames_processed(url, token) if args.pipeline else None
            started = time.monotonic()
            rounds = [measure_round(url, token, server.pid, args) for _ in range(max(1, args.rounds))]
            results: dict[str, Any] = {
                "api_workers": workers if args.pipeline else "serve",
                "routes": {route: route_totals(rounds, route) for route in args.routes},
                "counting_fps": counting_fps(rounds) if args.pipeline else None,
                "counting_fps_per_route": {route: counting_fps(rounds, route) for route in args.routes}
                if args.pipeline else None}
            results["rounds"] = [{**r, "bursts": [{**b, "load": _public(b["load"])} for b in r["bursts"]]}
                                 for r in rounds]
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
            server.wait(30)
    return results


def _public(load_result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in load_result.items() if k != "_ms"}


def report(results: dict[str, Any]) -> None:
    print(f"--api-workers {results['api_workers']}:", file=sys.stderr)
    for z in results["routes"].values():
        print(f"  {z['route']}: {z['req_per_s']} req/s, p50 {z['p50_ms']} ms, p99 {z['p99_ms']} ms "
              f"({z['requests']} requests, {z['concurrency']} concurrent, {z['errors']} errors; per round "
              f"{z['req_per_s_rounds']} req/s)", file=sys.stderr)
    if "sse" in results:
        s = results["sse"]
        print(f"  SSE fan-out: {s['delivered']}/{s['expected']} delivered to {s['clients']} clients, "
              f"delay p50 {s['delay_p50_ms']} ms, p99 {s['delay_p99_ms']} ms", file=sys.stderr)
    c = results["counting_fps"]
    if c:
        print(f"  counting: {c['idle']} frames/s idle, {c['during_burst']} during the bursts "
              f"({c['kept_pct']} % kept): {c['idle_frames']} frames in {c['idle_s']} s idle, "
              f"{c['burst_frames']} in {c['burst_s']} s of bursts over {c['rounds']} round(s)",
              file=sys.stderr)
    for i, r in enumerate(results["rounds"], 1):
        bursts = "; ".join(f"{b['load']['route']} {b['frames']} frames / {b['seconds']} s, "
                           f"{b['load']['req_per_s']} req/s, CPU s {b['cpu_s']}" for b in r["bursts"])
        print(f"  round {i}: idle {r['idle_frames']} frames / {r['idle_s']} s; {bursts}", file=sys.stderr)
    print(f"  load {results['load_before']} -> {results['load_after']}", file=sys.stderr)
    g = results.get("goal")
    if g:
        routes = ", ".join(f"{r} {'ok' if ok else 'not'}" for r, ok in g["routes"].items())
        print(f"  goal (>= {GOAL_REQ_PER_S:.0f} req/s, p99 < {GOAL_P99_MS:.0f} ms, counting >= "
              f"{GOAL_KEPT_PCT:.0f} % kept): {'met' if g['met'] else 'NOT met'} ({routes}, "
              f"kept {g['counting_kept_pct']} %)", file=sys.stderr)


#: Issue 29's goal for the cheap routes while counting runs: requests/s, p99 ms, counting kept (%).
GOAL_REQ_PER_S, GOAL_P99_MS, GOAL_KEPT_PCT = 300.0, 100.0, 90.0


def goal(run: dict[str, Any]) -> dict[str, Any]:
    """Whether one setting met the goal: every cheap route at >= 300 requests/s with p99 < 100 ms,
    and counting at >= 90 % of its idle frames/s during the bursts (where the pipeline ran)."""
    # 1 % slack on the rate: an open loop at 300 a second measures 299.x
    routes = {route: z["req_per_s"] >= GOAL_REQ_PER_S * 0.99 and z["p99_ms"] < GOAL_P99_MS and not z["errors"]
              for route, z in run["routes"].items()}
    kept = (run["counting_fps"] or {}).get("kept_pct")
    counting = kept is None or kept >= GOAL_KEPT_PCT
    return {"routes": routes, "counting_kept_pct": kept, "met": all(routes.values()) and counting}


def http_stack() -> dict[str, str]:
    """What uvicorn serves with here ("auto" picks uvloop and httptools where they are installed):
    its pure-Python HTTP parser costs more CPU per request than httptools."""
    return {"loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--sse-clients", type=int, default=100)
    ap.add_argument("--sse-rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="run the demo pipeline with the API (crowdsafe run) or the API alone (serve)")
    ap.add_argument("--precision", default="int8", help="of the pipeline's engine")
    ap.add_argument("--idle-window", type=float, default=30.0,
                    help="seconds of counting without requests, measured before the bursts (0: skip)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="idle window + bursts in this run; frames/s adds them all up")
    ap.add_argument("--api-workers", type=int, nargs="+", default=[1],
                    help="one run per value: API processes beside counting (0: threads of the counting one)")
    ap.add_argument("--rate", type=float, default=None,
                    help="requests a second, on a fixed schedule (open loop); default: as fast as answered")
    ap.add_argument("--sample-every", default=None,
                    help="sample the demo camera this often (e.g. 0.25s, faster than the engine counts) "
                         "instead of the demo's 1 s")
    ap.add_argument("--routes", nargs="+", default=["/api/zones", "/health"],
                    help="routes loaded in turn, one burst each per round")
    args = ap.parse_args()
    settings = args.api_workers if args.pipeline else [None]
    runs = []
    for workers in settings:
        runs.append(one_setting(args, workers))
        runs[-1]["goal"] = goal(runs[-1])
        report(runs[-1])
    results = {"runs": runs,
               "scaling": [{"api_workers": r["api_workers"],
                            **{route: {"req_per_s": z["req_per_s"], "p99_ms": z["p99_ms"]}
                               for route, z in r["routes"].items()},
                            "counting_kept_pct": (r["counting_fps"] or {}).get("kept_pct")} for r in runs],
               "sample_every": args.sample_every or "1s (the demo site as shipped)",
               "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "http_stack": http_stack()},
               "command": " ".join(["python", "benchmarks/bench_api.py", *sys.argv[1:]])}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
