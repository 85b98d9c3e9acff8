"""The demo site as benchmark input: a site file with a chosen sampling period, a store filled with
realistic readings, and API tokens.

The API and memory benchmarks (``benchmarks/``) measure against this data, and the tests reuse it
(through ``tests/support``), so benchmarks never import the tests and both measure the same thing.
Nothing here is used by a running site.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import yaml

from crowdsafe.api.tokens import TokenBook
from crowdsafe.config.site import Site, load_site
from crowdsafe.store import Store

DEMO_SITE = Path(str(resources.files("crowdsafe.data").joinpath("demo_site.yaml")))
DEMO_VIDEO = DEMO_SITE.parent / "vtest.avi"
#: Share of each demo zone the camera sees.
SEEN = {"walkway": 0.965, "lawn": 0.476, "forecourt": 0.8}
#: Base count, swing and phase offset of each demo zone's synthetic day.
LEVELS = {"walkway": (60.0, 35.0, 0.0), "lawn": (45.0, 30.0, 2.0), "forecourt": (150.0, 60.0, 4.0)}


def demo_site() -> Site:
    return load_site(DEMO_SITE)


def demo_site_file(folder: Path, every: str = "2s", source: str | None = None, scale: float = 1.0) -> Path:
    """The demo site written to ``folder/site.yaml`` with an absolute source, a sampling period and
    optionally scaled pixels (a run from any working directory reads the bundled video)."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    cam = data["cameras"][0]
    cam["source"] = source or str(DEMO_VIDEO)
    cam["sampling"] = {"every": every}
    if scale != 1.0:
        cal = cam["calibration"]
        cal["image_size"] = [round(v * scale) for v in cal["image_size"]]
        cal["image_points"] = [[u * scale, v * scale] for u, v in cal["image_points"]]
        cal["focal_px"] *= scale
        cal["principal_point"] = [v * scale for v in cal["principal_point"]]
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def zone_row(site: Site, zone_id: str, ts: float, count: float) -> dict:
    """A reading as the pipeline would store it: density over the seen area, LoS and risk from profiles."""
    book = site.safety.profile_book()
    zone = next(z for z in site.zones if z.id == zone_id)
    from shapely import Polygon

    area = Polygon(zone.polygon).area * SEEN.get(zone_id, 1.0)
    density = count / area
    los = book.los_profile(zone.type, zone.los_profile).classify(density)
    return {"zone_id": zone_id, "ts": ts, "count": count, "count_low": count * 0.85,
            "count_high": count * 1.15, "area_m2": area, "density": density, "los": los,
            "risk": book.risk.classify(density), "coverage_pct": 100.0 * SEEN.get(zone_id, 1.0)}


def fill_demo_store(store: Store, now: float, hours: float = 2.0, step_s: float = 10.0) -> None:
    """Readings every ``step_s`` for the last ``hours``: crowds that swell and ebb, a gate, health, alerts."""
    site = demo_site()
    n = int(hours * 3600 / step_s)
    zones, lines, health = [], [], []
    for i in range(n):
        ts = now - (n - i) * step_s
        phase = 2 * math.pi * i / n
        for zid, (base, swing, offset) in LEVELS.items():  # base, swing, phase offset
            count = max(0.0, base + swing * math.sin(phase + offset) + 3 * math.sin(i / 3.0))
            zones.append(zone_row(site, zid, ts, round(count, 2)))
        flow_in, flow_out = 8 + 4 * math.sin(phase), 5 + 3 * math.cos(phase)
        lines.append({"line_id": "east_gate", "ts": ts, "period_s": step_s, "in_count": flow_in,
                      "out_count": flow_out, "flow_pmm": (flow_in + flow_out) / 13.5 / (step_s / 60)})
        if i % 6 == 0:
            health.append({"camera_id": "view001", "ts": ts, "status": "up", "fps": 7.5, "last_frame_ts": ts,
                           "errors": 0, "message": "ok"})
    store.write("zone_readings", zones)
    store.write("line_readings", lines)
    store.write("camera_health", health)
    alerts = [
        ("a-forecourt-risk", "risk_critical", "forecourt", "critical", "raised", now - 300, None, None, 2.0,
         "Building forecourt: 4.3 people/m² for 40 s (limit 4.0, risk critical)"),
        ("a-walkway-capacity", "capacity_90", "walkway", "warning", "acknowledged", now - 1800,
         now - 1700, None, 92.5, "Main walkway: 231 people, 92.5 % of capacity for 20 s (limit 90 %)"),
        ("a-lawn-surge", "surge", "lawn", "warning", "cleared", now - 5000, None, now - 4000, 45.0,
         "Front lawn: gaining 45 people/min over the last 60 s (limit 30)"),
    ]
    for aid, rule, subject, sev, state, raised, acked, cleared, value, msg in alerts:
        store.save_alert({"alert_id": aid, "rule": rule, "subject": subject, "severity": sev, "state": state,
                          "raised_ts": raised, "acknowledged_ts": acked,
                          "acknowledged_by": "operator-1" if acked else None, "cleared_ts": cleared,
                          "value": value, "message": msg})


def make_tokens(state_dir: Path) -> dict[str, str]:
    """One fresh token per role in ``state_dir``, as `crowdsafe token create` would write them."""
    book = TokenBook(state_dir / "tokens.json")
    return {role: book.create(role)[1] for role in ("viewer", "operator", "admin")}


