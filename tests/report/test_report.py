"""The event debrief (``crowdsafe report``): every number it prints, from a store of known readings.

The store holds hand-made readings whose peaks, band times, totals and alert timings are known
by construction, so each table cell of the report is asserted exactly. A second store checks the
forecast error (the naive forecast of a linear ramp is off by exactly the ramp over the horizon),
a third the size for a 12-hour event with 20 zones, and the page renders in headless Chromium
where it is installed (screenshots kept in test-artifacts/).
"""

from __future__ import annotations

import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crowdsafe.api import ApiSettings, create_app
from crowdsafe.cli.main import app as cli
from crowdsafe.config.site import Site, parse_site
from crowdsafe.report.compute import build_report, forecast_check, holds
from crowdsafe.report.render import fmt_ts, render_html, write_report
from crowdsafe.store import Store, open_store
from tests.support.api_support import DEMO_SITE, make_tokens

T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
END = T0 + 600.0
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("CROWDSAFE_CHROMIUM", "/usr/bin/chromium")


def demo_site_with(**extra: object) -> Site:
    data = yaml.safe_load(DEMO_SITE.read_text())
    data.update(extra)
    return parse_site(data, str(DEMO_SITE), DEMO_SITE.parent)


STAFFED = {"staffing": {"people_per_steward": 50, "min_stewards": 1, "planned_stewards": {"walkway": 2}}}


def walkway_rows() -> list[dict]:
    """60 readings 10 s apart, readings 20-24 missing (a 60 s gap). LoS A, then C (40-49), F (50-59)."""
    rows = []
    for i in range(60):
        if 20 <= i <= 24:
            continue
        count = 120.0 if i in (45, 55) else float(i)
        rows.append(
            {
                "zone_id": "walkway",
                "ts": T0 + 10 * i,
                "count": count,
                "count_low": count - 1,
                "count_high": count + 1,
                "area_m2": 100.0,
                "density": 3.5 if i == 57 else count / 100.0,
                "los": "A" if i < 40 else "C" if i < 50 else "F",
                "risk": "normal" if i < 50 else "critical",
                "coverage_pct": 96.5,
            }
        )
    return rows


def fill_known(store: Store) -> None:
    store.write("zone_readings", walkway_rows())
    store.write(
        "zone_readings",
        [
            {
                "zone_id": "walkway",
                "ts": T0 - 10,
                "count": 999.0,
                "los": "F",
                "risk": "dangerous",
                "density": 9.0,
            }
        ],
    )  # before the period: ignored
    store.write(
        "line_readings",
        [
            {
                "line_id": "east_gate",
                "ts": T0 + 10 * i,
                "period_s": 10.0,
                "in_count": 7.0 if i == 10 else 2.0,
                "out_count": 1.0,
                "flow_pmm": ((7.0 if i == 10 else 2.0) + 1.0) / 13.5 * 6.0,
            }
            for i in range(60)
        ],
    )
    dropped = [0, 0, 1, 1, 3, 3, 3, 4, 4, 4]
    store.write(
        "camera_health",
        [
            {
                "camera_id": "view001",
                "ts": T0 + 60 * k,
                "status": "reconnecting" if k == 5 else "up",
                "fps": 1.0,
                "last_frame_ts": T0 + 60 * k,
                "errors": 0,
                "message": f"frames {60 * k}, samples {6 * k}, dropped {dropped[k]}, reconnects 0, gaps 0",
            }
            for k in range(10)
        ],
    )
    for alert_id, severity, raised, acked, cleared in [
        ("w1", "warning", T0 + 100, T0 + 190, T0 + 300),
        ("c1", "critical", T0 + 500, T0 + 530, None),
        ("i1", "info", T0 + 50, None, None),
        ("old", "critical", T0 - 100, T0 - 50, T0 - 10),
    ]:
        store.save_alert(
            {
                "alert_id": alert_id,
                "rule": "capacity_90",
                "subject": "walkway",
                "severity": severity,
                "state": "cleared" if cleared else "acknowledged" if acked else "raised",
                "raised_ts": raised,
                "acknowledged_ts": acked,
                "acknowledged_by": "op-1" if acked else None,
                "cleared_ts": cleared,
                "value": 1.0,
                "message": f"note {alert_id}",
                "note": "two stewards sent" if alert_id == "w1" else None,
            }
        )


@pytest.fixture
def known(tmp_path: Path) -> Store:
    store = open_store(tmp_path / "crowdsafe.sqlite")
    fill_known(store)
    yield store
    store.close()


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, and the page's <section> ids in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.section = ""
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.section = dict(attrs)["id"]
        elif tag == "table":
            self.tables.setdefault(self.section, []).append([])
        elif tag == "tr":
            self.tables[self.section][-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[self.section][-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables_of(page: str) -> dict[str, list[list[list[str]]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_holds_count_gaps_as_one_step_and_cut_the_last_at_the_end():
    assert holds([0, 10, 20, 80, 90], 95) == [10, 10, 10, 10, 5]
    assert holds([5.0], 10) == [0.0]


def test_camera_counters_count_from_zero_only_when_they_started_in_the_period(known):
    site = demo_site_with()
    whole = build_report(known, site, T0, END, forecast=False).cameras[0]
    later = build_report(known, site, T0 + 130, END, forecast=False).cameras[0]
    assert (whole.samples, whole.dropped) == (54, 4)
    assert (later.samples, later.dropped) == (54 - 18, 4 - 1)  # rows from T0+180: samples 18, dropped 1
    known.write(
        "camera_health",
        [
            {
                "camera_id": "view001",
                "ts": T0 + 600,
                "status": "up",
                "errors": 0,
                "message": "frames 10, samples 7, dropped 2, reconnects 0, gaps 0",
            }
        ],
    )
    restarted = build_report(known, site, T0, END + 10, forecast=False).cameras[0]
    assert (restarted.samples, restarted.dropped) == (54 + 7, 4 + 2)  # a restart: its new value counts


def test_summary_numbers_match_the_known_readings(known):
    report = build_report(known, demo_site_with(**STAFFED), T0, END, forecast=False)
    walkway = report.zones[0]
    assert walkway.readings == 55
    assert (walkway.peak_count, walkway.peak_count_ts) == (120.0, T0 + 450)  # the first of two equal peaks
    assert (walkway.peak_density, walkway.peak_density_ts) == (3.5, T0 + 570)
    assert walkway.peak_pct_of_capacity == 48.0
    assert walkway.los_seconds == {"A": 350.0, "B": 0.0, "C": 100.0, "D": 0.0, "E": 0.0, "F": 100.0}
    assert walkway.risk_seconds == {"normal": 450.0, "slowed": 0.0, "critical": 100.0, "dangerous": 0.0}
    assert walkway.measured_s == 550.0
    assert walkway.min_coverage_pct == 96.5
    assert [z.readings for z in report.zones[1:]] == [0, 0]
    gate = report.gates[0]
    assert (gate.total_in, gate.total_out) == (125.0, 60.0)
    assert gate.peak_flow_ts == T0 + 100
    assert report.alerts_by_severity == {"critical": 1, "info": 1, "warning": 1}
    assert [(a.alert_id, a.ack_s) for a in report.alerts] == [("i1", None), ("w1", 90.0), ("c1", 30.0)]
    cam = report.cameras[0]
    assert (cam.uptime_pct, cam.gaps, cam.samples, cam.dropped) == (90.0, [(T0 + 300, T0 + 360)], 54, 4)
    # the policy plans from an upper bound (hi80), so the slot's peak is the readings' count_high
    assert [(s.zone_id, s.peak_count, s.recommended, s.planned, s.shortfall) for s in report.staffing] == [
        ("walkway", 121.0, 3, 2, 1)
    ]
    assert [(e.zone_id, round(e.clearance_s, 3)) for e in report.egress] == [("walkway", 9.756)]


def test_every_printed_number_is_asserted(known):
    page = render_html(build_report(known, demo_site_with(**STAFFED), T0, END, forecast=False))
    tables = tables_of(page)
    at = fmt_ts
    mean = f"{sum(r['count'] for r in walkway_rows()) / 55:.1f}"
    peaks, los, risk, gates, alerts = tables["summary"]
    assert peaks[1:] == [
        ["Main walkway", "120.0", at(T0 + 450), "48.0", "3.50", at(T0 + 570), mean, "55"],
        ["Front lawn", "–", "–", "–", "–", "–", "–", "0"],
        ["Building forecourt", "–", "–", "–", "–", "–", "–", "0"],
    ]
    assert los[0] == ["Zone", "A", "B", "C", "D", "E", "F", "Measured"]
    assert los[1] == [
        "Main walkway",
        "0:05:50",
        "0:00:00",
        "0:01:40",
        "0:00:00",
        "0:00:00",
        "0:01:40",
        "0:09:10",
    ]
    assert risk[1] == ["Main walkway", "0:07:30", "0:00:00", "0:01:40", "0:00:00"]
    assert risk[2][1:] == ["–"] * 4
    assert gates[1:] == [["East gate (across the walkway)", "125", "60", "3.6", at(T0 + 100)]]
    assert alerts[1:] == [
        ["critical", "1", "1", "0:00:30", "0:00:30"],
        ["info", "1", "0", "–", "–"],
        ["warning", "1", "1", "0:01:30", "0:01:30"],
    ]
    (alert_table,) = tables["alerts"]
    assert alert_table[1:] == [
        ["info", "walkway", "capacity_90", at(T0 + 50), "–", "–", "–", "–", "note i1", "–"],
        [
            "warning",
            "walkway",
            "capacity_90",
            at(T0 + 100),
            at(T0 + 190),
            "op-1",
            "0:01:30",
            at(T0 + 300),
            "note w1",
            "two stewards sent",  # the operator's note, not the alert's message again (issue 26)
        ],
        ["critical", "walkway", "capacity_90", at(T0 + 500), at(T0 + 530), "op-1", "0:00:30", "–", "note c1",
         "–"],
    ]
    (staff,) = tables["staffing"]
    assert staff[1:] == [["walkway", at(T0), "121.0", "3", "2", "1"]]
    (egress,) = tables["egress"]
    assert egress[1:] == [["walkway", "120.0", at(T0 + 450), "10", "480", "yes"]]
    cams, coverage = tables["quality"]
    # the demo camera runs its tuning: it has a per-camera model (issue 26)
    assert cams[1:] == [["view001", "90.0", "1", "0:01:00", "54", "4", "auto",
                         "yes (tuning view001_tuning.json)"]]
    assert coverage[1:] == [["Main walkway", "96.5"]]
    assert f"{at(T0)} to {at(END)} (0:10:00)" in page
    assert at(T0) == "2026-05-28 20:26:40 UTC"  # a site without a timezone is in UTC
    (sign,) = tables["signoff"]
    # blank, to sign on paper
    assert sign[1:] == [["Prepared by", "", ""], ["Reviewed by", "", ""], ["Date", "", ""]]


def test_times_are_local_with_utc_alongside_and_charts_in_24_hours(known):
    report = build_report(known, demo_site_with(timezone="Europe/Berlin", **STAFFED), T0, END, forecast=False)
    page = render_html(report)
    peaks = tables_of(page)["summary"][0]
    assert peaks[1][2] == "2026-05-28 22:34:10 CEST (20:34:10 UTC)"  # T0 + 450
    assert "times in Europe/Berlin (UTC alongside), 24-hour" in page
    ticks = re.findall(r">(\d\d:\d\d)</text>", page)
    assert ticks and all(0 <= int(t[:2]) <= 23 for t in ticks) and "22:30" in ticks  # local axis labels
    assert not re.search(r"\b(AM|PM)\b", page)


def test_issue_26_findings_in_the_debrief(known):
    """One staffing slot is drawn; a zone with readings gets min_stewards however empty; a camera
    that started inside the period is not 'down' before it started."""
    known.write("zone_readings", [{"zone_id": "forecourt", "ts": T0 + 10 * i, "count": 0.28,
                                   "count_high": 0.45, "los": "A", "risk": "normal", "density": 0.001}
                                  for i in range(60)])
    report = build_report(known, demo_site_with(**STAFFED), T0 - 600, END, forecast=False)
    forecourt = [s for s in report.staffing if s.zone_id == "forecourt"]
    assert forecourt and all(s.recommended == 1 for s in forecourt)  # min_stewards: 1, as on the dashboard
    cam = report.cameras[0]
    assert cam.not_running == [(T0 - 600, T0)]
    assert cam.uptime_pct == 90.0  # not 45 %: the 10 minutes before the camera's first report are no outage
    assert cam.gaps == [(T0 + 300, T0 + 360)]
    one_slot = build_report(known, demo_site_with(**STAFFED), T0, T0 + 600, forecast=False)
    assert len({s.slot_start_ts for s in one_slot.staffing}) == 1
    svg = re.search(r"<section id=\"staffing\">.*?</svg>", render_html(one_slot), re.S)
    assert svg is not None and svg.group(0).count("<polyline") >= 3  # walkway (2) and forecourt, drawn


def test_page_is_self_contained_with_charts(known):
    page = render_html(build_report(known, demo_site_with(**STAFFED), T0, END, forecast=False))
    charts = len(re.findall(r"<svg|<img", page))
    assert charts >= 7  # bands, walkway, gate, alerts, staffing, egress, uptime, camera view
    assert not re.search(r"""(src|href)=["']?https?://""", page)
    assert "<script" not in page and "<link" not in page
    ids = re.findall(r"<svg[^>]*>", page)
    assert len(ids) == charts  # no picture: the demo store has no background here


def test_no_staffing_policy_says_so(known):
    report = build_report(known, demo_site_with(staffing=None), T0, END, forecast=False)
    assert report.staffing is None
    assert "no staffing policy" in render_html(report)


def test_forecast_error_of_a_naive_forecast_on_a_ramp(tmp_path):
    """One reading a minute, count = minutes since the start: a naive forecast 15 min ahead is 15 low."""
    store = open_store(tmp_path / "s.sqlite")
    t0 = T0 + 20  # a whole minute: forecasts work on epoch minutes
    start = t0 - 7200
    store.write(
        "zone_readings",
        [
            {
                "zone_id": "walkway",
                "ts": start + 60 * m,
                "count": float(m),
                "los": "A",
                "risk": "normal",
                "density": 0.01,
            }
            for m in range(180)
        ],
    )
    check = forecast_check(store, demo_site_with(), "walkway", t0, t0 + 3600, "naive")
    assert check.horizon_min == 15
    assert check.target_ts[0] == t0 and check.target_ts[1] == t0 + 300
    assert all(t < t0 + 3600 for t in check.target_ts) and len(check.actual) == 12
    assert check.mae == 15.0
    assert all(a - f == 15.0 for a, f in zip(check.actual, check.forecast, strict=True))
    store.close()


def test_cli_writes_html_and_pdf(known, tmp_path):
    site_file = tmp_path / "site.yaml"
    data = yaml.safe_load(DEMO_SITE.read_text())
    data["cameras"][0]["source"] = str(DEMO_SITE.parent / "vtest.avi")
    site_file.write_text(yaml.safe_dump(data))
    db = tmp_path / "crowdsafe.sqlite"
    out, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            str(site_file),
            "--store",
            str(db),
            "--from",
            "2026-05-28T20:26:40",
            "--to",
            str(END),
            "--out",
            str(out),
            "--pdf",
            str(pdf),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Main walkway" in out.read_text() and pdf.read_bytes().startswith(b"%PDF")
    assert f"{fmt_ts(T0)} to {fmt_ts(END)}" in out.read_text()
    signed = CliRunner().invoke(cli, ["report", str(site_file), "--store", str(db), "--from", str(T0), "--to",
                                      str(END), "--out", str(out), "--prepared-by", "A. Officer",
                                      "--reviewed-by", "B. Licensing", "--date", "2026-05-29"])
    assert signed.exit_code == 0, signed.output
    (sign,) = tables_of(out.read_text())["signoff"]
    assert [row[:2] for row in sign[1:]] == [["Prepared by", "A. Officer"], ["Reviewed by", "B. Licensing"],
                                            ["Date", "2026-05-29"]]
    bad = CliRunner().invoke(cli, ["report", str(site_file), "--store", str(db), "--from", "soon"])
    assert bad.exit_code == 2


def test_api_report_is_for_operators(known, tmp_path):
    state = tmp_path  # the fixture's store is tmp_path/crowdsafe.sqlite, the API's default
    tokens = make_tokens(state)
    settings = ApiSettings(site_file=DEMO_SITE, state_dir=state)
    with TestClient(create_app(settings)) as client:
        params = {"start": T0, "end": END}
        assert client.get("/api/report", params=params).status_code == 401
        viewer = client.get(
            "/api/report", params=params, headers={"Authorization": f"Bearer {tokens['viewer']}"}
        )
        assert viewer.status_code == 403
        for role in ("operator", "admin"):
            r = client.get("/api/report", params=params, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert '<td>Main walkway</td><td class="n">120.0</td>' in r.text
        sign_params = {**params, "prepared_by": "A. Officer", "date": "2026-05-29"}
        signed = client.get("/api/report", params=sign_params,
                            headers={"Authorization": f"Bearer {tokens['operator']}"})
        (sign,) = tables_of(signed.text)["signoff"]
        assert [row[:2] for row in sign[1:]] == [["Prepared by", "A. Officer"], ["Reviewed by", ""],
                                                ["Date", "2026-05-29"]]
        assert client.get("/api/report", params={**params, "prepared_by": "x\ny"},
                          headers={"Authorization": f"Bearer {tokens['operator']}"}).status_code == 422
        bad = client.get(
            "/api/report",
            params={"start": END, "end": T0},
            headers={"Authorization": f"Bearer {tokens['operator']}"},
        )
        assert bad.status_code == 422


def test_twelve_hours_twenty_zones_under_5_mb(tmp_path):
    """The issue's size bound, measured: 20 zones, readings every 10 s for 12 h, a gate, alerts."""
    data = yaml.safe_load(DEMO_SITE.read_text())
    data["zones"] = [
        {
            "id": f"z{k:02d}",
            "capacity": 500,
            "type": "standing",
            "polygon": [
                [-20 + 4 * (k % 10), -16 + 8 * (k // 10)],
                [-16 + 4 * (k % 10), -16 + 8 * (k // 10)],
                [-16 + 4 * (k % 10), -8 + 8 * (k // 10)],
                [-20 + 4 * (k % 10), -8 + 8 * (k // 10)],
            ],
            "exits": [{"name": "gate", "width_m": 2.0}],
        }
        for k in range(20)
    ]
    site = parse_site(data, str(DEMO_SITE), DEMO_SITE.parent)
    store = open_store(tmp_path / "big.sqlite")
    start, n = T0, 12 * 360
    for k in range(20):
        store.write(
            "zone_readings",
            [
                {
                    "zone_id": f"z{k:02d}",
                    "ts": start + 10 * i,
                    "count": 100 + 80 * ((i * (k + 3)) % 97) / 97,
                    "count_low": 90.0,
                    "count_high": 200.0,
                    "density": 3.0 * ((i * (k + 3)) % 97) / 97,
                    "los": "ABCDEF"[(i // 50 + k) % 6],
                    "risk": "normal",
                    "coverage_pct": 100.0,
                }
                for i in range(n)
            ],
        )
    store.write(
        "line_readings",
        [
            {
                "line_id": "east_gate",
                "ts": start + 10 * i,
                "period_s": 10.0,
                "in_count": 3.0,
                "out_count": 1.0,
                "flow_pmm": 30.0 + i % 40,
            }
            for i in range(n)
        ],
    )
    t = time.perf_counter()
    size = write_report(
        build_report(store, site, start, start + 12 * 3600, forecast_method="naive"), tmp_path / "big.html"
    )
    elapsed = time.perf_counter() - t
    print(f"12 h x 20 zones: {size / 1e6:.2f} MB in {elapsed:.1f} s")
    assert size < 5_000_000
    store.close()


def test_renders_in_headless_chromium_without_console_errors(known, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    out = tmp_path / "report.html"
    write_report(build_report(known, demo_site_with(**STAFFED), T0, END, forecast=False), out)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        assert page.locator("section").count() == 10
        assert page.locator("svg").count() >= 7
        widths = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
        assert min(widths) > 200  # every chart laid out, none collapsed
        page.screenshot(path=str(ARTIFACTS / "report-top.png"))
        page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
        page.pdf(path=str(ARTIFACTS / "report-print.pdf"))
        browser.close()
    assert errors == []


def test_demo_has_a_report_option():
    """`crowdsafe demo --report r.html` (the full run is the acceptance script's, 60 s of counting)."""
    result = CliRunner().invoke(cli, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--report" in result.output


def test_operator_actions_list_the_audit_trail_of_the_period(known):
    """Background captures, undos and refusals (``Store.record``, written by the API) are in the
    debrief, in the period only; a period without any says so."""
    rows = [(T0 + 60, "capture", "refused", "the counter finds a person in view (0.91 people in one block)"),
            (T0 + 120, "capture", "done", "subtracting a captured background (5.2 people of texture)"),
            (T0 + 180, "undo", "done", "no trusted background, counting without subtraction"),
            (END + 60, "capture", "done", "after the period")]
    for ts, action, outcome, detail in rows:
        known.record({"ts": ts, "actor": "op-1", "action": f"background_{action}", "subject": "view001",
                      "outcome": outcome, "detail": detail})
    page = render_html(build_report(known, demo_site_with(**STAFFED), T0, END, forecast=False))
    (actions,) = tables_of(page)["actions"]
    assert actions[0] == ["Time", "By", "Action", "Camera", "Outcome", "Detail"]
    assert actions[1:] == [[fmt_ts(ts), "op-1", f"background {action}", "view001", outcome, detail]
                           for ts, action, outcome, detail in rows[:3]]
    later = build_report(known, demo_site_with(**STAFFED), END + 3600, END + 7200, forecast=False)
    empty = render_html(later)
    assert "No background was captured, undone or refused in the period." in empty
