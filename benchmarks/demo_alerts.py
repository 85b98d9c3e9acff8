"""How many alerts a demo run raised, and for how long: issue 16's "Done when" for alerts.

    crowdsafe demo --duration 600 --port 0 --quiet --state-dir DIR
    python benchmarks/demo_alerts.py DIR/crowdsafe.sqlite [--rule demo_busy] [--json OUT] [--demo-log LOG]

Reads the alerts table of the demo's store: each alert of the rule (a re-raise within the
cool-down reopens the same alert and counts an occurrence, so it is one alert), when it was raised
and cleared, and how long it lasted (still open: until the store's last zone reading, the end of
the run). It also feeds the stored zone readings through the demo's rule again (the same alert
engine), which gives each occurrence's raise and clear, and checks that it finds the same alerts.
The rule's thresholds and hold time are the demo's own (``crowdsafe.cli.demo``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import deque
from pathlib import Path
from typing import Any

from crowdsafe.cli.demo import (
    DEMO_BUSY_PCT,
    DEMO_CLEAR_PCT,
    DEMO_COOLDOWN_S,
    DEMO_HOLD_S,
    DEMO_SMOOTH_S,
    demo_rules,
    demo_site_file,
)
from crowdsafe.config.site import load_site
from crowdsafe.safety.alerts import AlertEngine, AlertRule
from crowdsafe.store import open_store


def replay(readings: list[dict[str, Any]], rule: AlertRule, capacity: dict[str, float],
           run_end: float) -> list[dict[str, Any]]:
    """Every occurrence (raise to clear) of the rule, fed the stored readings again in time order.

    The demo logs raises only (clears are INFO, below its log level) and the store keeps one row
    per alert, so this is how each occurrence's length is known: the pipeline feeds the rule
    ``capacity_pct`` = 100 * count / capacity of each zone reading, at the reading's time.
    """
    engine = AlertEngine([rule])
    since: dict[str, float] = {}
    spans: list[dict[str, Any]] = []
    for r in sorted(readings, key=lambda r: (r["ts"], r["zone_id"])):
        if r["zone_id"] not in capacity:
            continue
        pct = 100.0 * r["count"] / capacity[r["zone_id"]]
        for alert in engine.update(r["zone_id"], rule.metric, r["ts"], pct):
            if alert.state == "raised":
                since[alert.subject] = r["ts"]
            elif alert.state == "cleared" and alert.subject in since:
                start = since.pop(alert.subject)
                spans.append({"subject": alert.subject, "alert_id": alert.alert_id, "raised_ts": start,
                              "cleared_ts": r["ts"], "seconds": round(r["ts"] - start, 1)})
    for alert in engine.open_alerts():
        start = since[alert.subject]
        spans.append({"subject": alert.subject, "alert_id": alert.alert_id, "raised_ts": start,
                      "cleared_ts": None, "seconds": round(run_end - start, 1), "open_at_end": True})
    return sorted(spans, key=lambda s: s["raised_ts"])


def tested_values(readings: list[dict[str, Any]], rule: AlertRule,
                  capacity: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per zone, the range of what the rule tests (the ``smooth_s`` mean of capacity_pct)."""
    out: dict[str, dict[str, float]] = {}
    for zone, cap in capacity.items():
        rows = sorted((r["ts"], 100.0 * r["count"] / cap) for r in readings if r["zone_id"] == zone)
        window: deque[tuple[float, float]] = deque()
        means: list[float] = []
        for ts, pct in rows:
            window.append((ts, pct))
            while window[0][0] < ts - (rule.smooth_s or 0.0):
                window.popleft()
            means.append(sum(v for _, v in window) / len(window))
        if means:
            out[zone] = {"min": round(min(means), 2), "median": round(statistics.median(means), 2),
                         "max": round(max(means), 2),
                         "share_at_or_above_raise": round(sum(m >= rule.raise_at for m in means)
                                                          / len(means), 3),
                         "share_below_clear": round(sum(m < rule.clear_at for m in means) / len(means), 3)}
    return out


def summarise(store_path: Path, rule: str) -> dict[str, Any]:
    store = open_store(store_path)
    try:
        readings = store.query("zone_readings")
        alerts = [a for a in store.alerts() if a["rule"] == rule]
    finally:
        store.close()
    if not readings:
        raise SystemExit(f"{store_path}: no zone readings; is it a demo's store?")
    start, end = min(r["ts"] for r in readings), max(r["ts"] for r in readings)
    rows = []
    for a in sorted(alerts, key=lambda a: a["raised_ts"]):
        until = a["cleared_ts"] if a["cleared_ts"] is not None else end
        rows.append({"alert_id": a["alert_id"], "subject": a["subject"], "state": a["state"],
                     "raised_ts": a["raised_ts"], "last_raised_ts": a["last_raised_ts"],
                     "cleared_ts": a["cleared_ts"], "occurrences": a["occurrences"],
                     "seconds": round(until - a["raised_ts"], 1),
                     "last_occurrence_seconds": round(until - (a["last_raised_ts"] or a["raised_ts"]), 1),
                     "message": a["message"]})
    result: dict[str, Any] = {
        "rule": rule,
        "rule_config": {"raise_at_capacity_pct": DEMO_BUSY_PCT, "clear_at_capacity_pct": DEMO_CLEAR_PCT,
                        "smooth_s": DEMO_SMOOTH_S, "min_duration_s": DEMO_HOLD_S,
                        "cooldown_s": DEMO_COOLDOWN_S},
        "run": {"first_reading_ts": start, "last_reading_ts": end, "seconds": round(end - start, 1),
                "zone_readings": len(readings)},
        "alerts": len(rows),
        "occurrences": sum(r["occurrences"] for r in rows),
        "shortest_alert_s": min((r["seconds"] for r in rows), default=None),
        "alert_rows": rows,
    }
    rules = {r.name: r for r in demo_rules(load_site(demo_site_file()))}
    if rule in rules:
        capacity = {z.id: z.capacity for z in load_site(demo_site_file()).zones if z.capacity}
        spans = replay(readings, rules[rule], capacity, end)
        result["occurrences_replayed"] = spans
        result["replayed_alerts"] = len({s["alert_id"] for s in spans})
        result["shortest_occurrence_s"] = min((s["seconds"] for s in spans), default=None)
        result["tested_value_by_zone"] = tested_values(readings, rules[rule], capacity)
    durations = [r["seconds"] for r in rows] + [s["seconds"] for s in result.get("occurrences_replayed", [])]
    result["checks"] = {"at_most_3_alerts": len(rows) <= 3,
                        "each_lasts_at_least_min_duration": all(d >= DEMO_HOLD_S for d in durations),
                        "replay_finds_the_same_alerts": result.get("replayed_alerts", len(rows)) == len(rows)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="the demo's SQLite store (STATE_DIR/crowdsafe.sqlite)")
    ap.add_argument("--rule", default="demo_busy")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--demo-log", type=Path, help="the demo's output: its end-of-run summary is kept too")
    args = ap.parse_args()
    if not args.store.is_file():
        raise SystemExit(f"{args.store}: no such store")
    result = summarise(args.store, args.rule)
    if args.demo_log is not None:
        keep = ("demo site", "ran ", "store:", "camera ", "counted vs annotated")
        result["demo_summary"] = [line for line in args.demo_log.read_text(errors="replace").splitlines()
                                  if line.startswith(keep)]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shortest = result.get("shortest_occurrence_s", result["shortest_alert_s"])
    print(f"{args.rule}: {result['alerts']} alert(s), {result['occurrences']} occurrence(s) in "
          f"{result['run']['seconds']} s of readings; shortest {shortest} s "
          f"(hold {DEMO_HOLD_S} s); checks {result['checks']}", file=sys.stderr)


if __name__ == "__main__":
    main()
