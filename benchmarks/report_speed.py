"""How long the debrief of an hour takes: in process, and through ``GET /api/report``, one and two at once.

    python benchmarks/report_speed.py --source STATE_DIR [--hour-end TS] [--repeats 3] [--json OUT]

``--source`` is the state dir of a real ``crowdsafe demo`` run (its ``crowdsafe.sqlite``: zone,
line, camera-health readings and alerts as the pipeline wrote them, and its background). Its
readings are laid end to end, shifted by the run's span, until they fill one hour: an hour of
real readings at the live rate, without counting for an hour. The store is written to a temporary
folder; the source is only read.

Measured: ``build_report`` + ``render_html`` in this process (median of ``--repeats``), then a real
uvicorn server on 127.0.0.1 over that store (forecast model fitted first, as in a running API):
one ``GET /api/report`` for the hour, then two sent at the same moment (each one's latency, and
the wall time for both). Run it with ``PYTHONPATH`` pointing at another checkout's ``src`` to
measure that code on the same data (the "before" of a change).

Not part of CI (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "crowdsafe" / "data" / "demo_site.yaml"
TABLES = {"zone_readings": "ts", "line_readings": "ts", "camera_health": "ts"}
ALERT_TIMES = ("raised_ts", "acknowledged_ts", "cleared_ts", "last_raised_ts")


def fill_hour(source: Path, target: Path, hour_end: float) -> dict[str, int]:
    """Copy the source store, then append shifted copies of its readings until they span an hour."""
    shutil.copy(source, target)
    db = sqlite3.connect(target)
    lo, hi = db.execute("SELECT min(ts), max(ts) FROM zone_readings").fetchone()
    span = hi - lo + 1.0
    copies = int(3600.0 // span) + 1
    shift0 = hour_end - (hi + (copies - 1) * span)  # the last copy ends at hour_end
    cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in (*TABLES, "alerts")}
    base = {t: db.execute(f"SELECT {', '.join(cols[t])} FROM {t}").fetchall() for t in cols}
    for t in cols:
        db.execute(f"DELETE FROM {t}")
    for k in range(copies):
        shift = shift0 + k * span
        for t in cols:
            names = cols[t]
            times = [i for i, c in enumerate(names) if c in ("ts", "last_frame_ts", *ALERT_TIMES)]
            rows = []
            for row in base[t]:
                row = list(row)
                for i in times:
                    if row[i] is not None:
                        row[i] = row[i] + shift
                if t == "alerts":
                    row[names.index("alert_id")] = f"{row[names.index('alert_id')]}-{k}"
                rows.append(row)
            marks = ", ".join("?" * len(names))
            db.executemany(f"INSERT INTO {t} ({', '.join(names)}) VALUES ({marks})", rows)
    db.commit()
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in cols}
    db.close()
    return {**counts, "copies": copies, "source_span_s": round(span, 1)}


def in_process(state: Path, start: float, end: float, repeats: int) -> dict[str, float]:
    from crowdsafe.config.site import load_site
    from crowdsafe.report.compute import build_report
    from crowdsafe.report.render import render_html
    from crowdsafe.store import open_store

    site = load_site(DEMO)
    store = open_store(state / "crowdsafe.sqlite")
    times, size = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        page = render_html(build_report(store, site, start, end, backgrounds_dir=state / "backgrounds",
                                        forecast_method="naive"), generated_ts=time.time())
        times.append(time.perf_counter() - t0)
        size = len(page.encode())
    store.close()
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
            "html_bytes": size}


def through_api(state: Path, start: float, end: float) -> dict[str, object]:
    from crowdsafe.api import ApiSettings, serve_in_thread
    from crowdsafe.bench.demo_store import make_tokens
    from crowdsafe.store import open_store

    tokens = make_tokens(state)
    store = open_store(state / "crowdsafe.sqlite")
    handle = serve_in_thread(ApiSettings(site_file=DEMO, state_dir=state, port=0, log_level="warning"),
                             store=store)
    headers = {"Authorization": "Bearer " + tokens["operator"]}
    params = {"start": start, "end": end}
    try:
        with httpx.Client(base_url=handle.url, headers=headers, timeout=300) as c:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 180:  # the API's forecast model, fitted as in a running API
                if c.get("/api/forecast/status").json().get("ready"):
                    break
                time.sleep(1)
            fitted = c.get("/api/forecast/status").json()
            c.get("/api/report", params=params)  # warm-up (imports)
            t = time.perf_counter()
            one = c.get("/api/report", params=params)
            single = time.perf_counter() - t
            assert one.status_code == 200, one.text[:300]
        results: list[float] = [0.0, 0.0]

        def fetch(i: int) -> None:
            with httpx.Client(base_url=handle.url, headers=headers, timeout=300) as c2:
                t1 = time.perf_counter()
                r = c2.get("/api/report", params=params)
                results[i] = time.perf_counter() - t1
                assert r.status_code == 200

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(2)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        both = time.perf_counter() - t
    finally:
        handle.stop()
        store.close()
    return {"forecast_status": fitted, "one_s": round(single, 3),
            "two_at_once_s": [round(x, 3) for x in results],
            "two_at_once_wall_s": round(both, 3), "forecast_in_report": "Forecast 15 min ahead" in one.text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="state dir of a crowdsafe demo run")
    ap.add_argument("--hour-end", type=float, default=None, help="end of the hour (default: now)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import crowdsafe

    end = args.hour_end or time.time()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "backgrounds").mkdir()
        for bg in (args.source / "backgrounds").glob("*.jpg"):
            shutil.copy(bg, state / "backgrounds" / bg.name)
        store_info = fill_hour(args.source / "crowdsafe.sqlite", state / "crowdsafe.sqlite", end)
        result = {
            "benchmark": "report_speed",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "code": str(Path(crowdsafe.__file__).parent),
            "commit": subprocess.run(["git", "-C", str(Path(crowdsafe.__file__).parent), "rev-parse",
                                      "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_before": os.getloadavg()},
            "period_s": 3600.0,
            "store": store_info,
            "in_process": in_process(state, end - 3600.0, end, args.repeats),
            "api": through_api(state, end - 3600.0, end),
        }
        result["machine"]["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
