"""The store on a real SQLite file and a real PostgreSQL server: idempotent, queryable, retained."""

from __future__ import annotations

import csv

import pytest

from crowdsafe.store import StoreError, open_store
from tests.support.postgres_server import pg_bin, postgres_cluster


@pytest.fixture(scope="module")
def pg_url():
    if pg_bin() is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does)")
    with postgres_cluster() as (url, _control):
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(tmp_path / "readings.sqlite")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
        with s.engine.begin() as conn:  # each test starts empty
            for table in ("zone_readings", "line_readings", "camera_health", "alerts"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
    yield s
    s.close()


def reading(zone: str, ts: float, count: float) -> dict:
    return {"zone_id": zone, "ts": ts, "count": count, "count_low": count * 0.9,
            "count_high": count * 1.1, "area_m2": 50.0, "density": count / 50.0, "los": "A",
            "risk": "normal", "coverage_pct": 100.0}


def test_resent_readings_are_stored_once(store):
    rows = [reading("gate", 1000.0 + i, float(i)) for i in range(10)]
    assert store.write("zone_readings", rows) == 10
    assert store.write("zone_readings", [*rows[5:], reading("gate", 1010.0, 10.0)]) == 1
    stored = store.query("zone_readings", "gate")
    assert [r["ts"] for r in stored] == [1000.0 + i for i in range(11)]
    assert stored[3]["count"] == 3.0


def test_latest_and_time_range(store):
    store.write("zone_readings", [reading("a", t, t / 10) for t in (10.0, 20.0, 30.0)]
                + [reading("b", t, t) for t in (15.0, 25.0)])
    latest = {r["zone_id"]: r["ts"] for r in store.latest("zone_readings")}
    assert latest == {"a": 30.0, "b": 25.0}
    assert [r["ts"] for r in store.query("zone_readings", "a", start=15.0, end=30.0)] == [20.0]


def test_history_buckets_mean_min_max(store):
    store.write("zone_readings", [reading("z", float(t), float(t)) for t in range(0, 120, 10)])
    buckets = store.history("zone_readings", "z", "count", 0.0, 120.0, 60.0)
    assert buckets == [(0.0, 25.0, 0.0, 50.0), (60.0, 85.0, 60.0, 110.0)]


def test_history_skips_unmeasured_values_instead_of_failing(store):
    """A zone no camera sees has readings without density: its density chart has gaps, not a 500."""
    rows = [reading("z", float(t), 2.0) | {"density": None if t < 60 else 0.5} for t in range(0, 120, 10)]
    store.write("zone_readings", rows)
    assert store.history("zone_readings", "z", "density", 0.0, 120.0, 60.0) == [(60.0, 0.5, 0.5, 0.5)]
    assert store.history("zone_readings", "z", "count", 0.0, 120.0, 60.0) == [
        (0.0, 2.0, 2.0, 2.0), (60.0, 2.0, 2.0, 2.0)]


def test_retention_deletes_only_old_rows(store):
    store.write("zone_readings", [reading("z", float(t), 1.0) for t in range(100)])
    removed = store.delete_older_than(90.0)
    assert removed["zone_readings"] == 90
    assert [r["ts"] for r in store.query("zone_readings")] == [float(t) for t in range(90, 100)]


def test_bad_rows_are_refused_and_nothing_is_lost(store):
    store.write("zone_readings", [reading("z", 1.0, 5.0)])
    with pytest.raises(StoreError, match="non-finite count"):
        store.write("zone_readings", [reading("z", 2.0, 3.0), reading("z", 3.0, float("nan"))])
    with pytest.raises(StoreError, match="without zone_id"):
        store.write("zone_readings", [{"ts": 4.0, "count": 1.0}])
    with pytest.raises(StoreError, match="unknown table"):
        store.write("people", [])
    assert [r["ts"] for r in store.query("zone_readings")] == [1.0]  # the batch was all-or-nothing


def test_alert_lifecycle(store):
    alert = {"alert_id": "a1", "rule": "density", "subject": "gate", "severity": "critical",
             "state": "raised", "raised_ts": 100.0, "value": 4.2, "message": "4.2 p/m2"}
    store.save_alert(alert)
    assert store.acknowledge("a1", by="operator-1", ts=110.0)
    assert not store.acknowledge("a1", by="operator-2", ts=111.0)  # only raised alerts
    store.save_alert({**alert, "state": "cleared", "cleared_ts": 200.0,
                      "acknowledged_ts": 110.0, "acknowledged_by": "operator-1"})
    (stored,) = store.alerts()
    assert stored["state"] == "cleared"
    assert (stored["acknowledged_by"], stored["cleared_ts"]) == ("operator-1", 200.0)


def test_engine_updates_keep_the_operators_acknowledgement_and_note(store):
    """The alert engine does not see API acknowledgements: its clear must not blank them."""
    alert = {"alert_id": "a2", "rule": "busy", "subject": "walkway", "severity": "info", "state": "raised",
             "raised_ts": 100.0, "value": 2.8, "message": "busy", "acknowledged_ts": None,
             "acknowledged_by": None, "occurrences": 1, "last_raised_ts": 100.0}
    store.save_alert(alert)
    assert store.acknowledge("a2", by="operator-1", ts=110.0, note="stewards sent")
    store.save_alert({**alert, "state": "cleared", "cleared_ts": 200.0})
    store.save_alert({**alert, "state": "raised", "occurrences": 2, "last_raised_ts": 260.0})
    (stored,) = store.alerts()
    assert (stored["state"], stored["occurrences"], stored["last_raised_ts"]) == ("raised", 2, 260.0)
    assert (stored["acknowledged_by"], stored["note"]) == ("operator-1", "stewards sent")


def test_a_current_message_does_not_undo_the_acknowledgement(store):
    """The engine re-saves an open alert as its message changes, still saying "raised" (issue 26)."""
    alert = {"alert_id": "a3", "rule": "busy", "subject": "walkway", "severity": "info", "state": "raised",
             "raised_ts": 100.0, "value": 2.8, "message": "busy for 16 s", "occurrences": 1}
    store.save_alert(alert)
    assert store.acknowledge("a3", by="operator-1", ts=110.0, note="watching")
    store.save_alert({**alert, "message": "busy for 14 min"})
    (stored,) = store.alerts()
    assert (stored["state"], stored["message"]) == ("acknowledged", "busy for 14 min")
    assert stored["note"] == "watching"
    store.save_alert({**alert, "state": "cleared", "cleared_ts": 900.0})
    store.save_alert({**alert, "occurrences": 2, "cleared_ts": None})  # a new occurrence is raised again
    assert store.alerts()[0]["state"] == "raised"


def test_a_store_from_an_older_release_gets_the_new_alert_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alerts (alert_id VARCHAR(64) PRIMARY KEY, rule VARCHAR(64) NOT NULL, "
                     "subject VARCHAR(128) NOT NULL, severity VARCHAR(16) NOT NULL, "
                     "state VARCHAR(16) NOT NULL, "
                     "raised_ts FLOAT NOT NULL, acknowledged_ts FLOAT, acknowledged_by VARCHAR(128), "
                     "cleared_ts FLOAT, value FLOAT, message TEXT)")
        conn.execute("INSERT INTO alerts (alert_id, rule, subject, severity, state, raised_ts) "
                     "VALUES ('old', 'r', 'z', 'info', 'cleared', 1.0)")
    store = open_store(path)
    try:
        (old,) = store.alerts()
        assert old["occurrences"] == 1 and old["note"] is None
        store.save_alert({"alert_id": "new", "rule": "r", "subject": "z", "severity": "info",
                          "state": "raised", "raised_ts": 2.0, "occurrences": 3, "last_raised_ts": 5.0})
        assert store.alerts(state="raised")[0]["occurrences"] == 3
    finally:
        store.close()


def test_export_csv(store, tmp_path):
    store.write("zone_readings", [reading("z", float(t), float(t)) for t in range(3)])
    out = tmp_path / "export" / "zones.csv"
    assert store.export_csv("zone_readings", out) == 3
    rows = list(csv.DictReader(out.open()))
    assert [float(r["count"]) for r in rows] == [0.0, 1.0, 2.0]


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open store"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")


def test_password_is_not_echoed_in_errors():
    with pytest.raises(StoreError) as info:
        open_store("postgresql://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(info.value)


def test_export_cli_writes_csv_and_refuses_bad_requests(tmp_path):
    from typer.testing import CliRunner

    from crowdsafe.cli.main import app

    db = tmp_path / "s.sqlite"
    s = open_store(db)
    s.write("zone_readings", [reading("z", float(t), float(t)) for t in range(5)])
    s.close()
    out = tmp_path / "z.csv"
    result = CliRunner().invoke(app, ["export", str(out), "--store", str(db), "--since", "2"])
    assert result.exit_code == 0, result.output
    assert [float(r["ts"]) for r in csv.DictReader(out.open())] == [2.0, 3.0, 4.0]
    for args, message in ((["x.txt", "--store", str(db)], "use a .csv"),
                          (["x.csv", "--store", str(tmp_path / "none.sqlite")], "does not exist"),
                          (["x.csv", "--store", str(db), "--table", "faces"], "unknown table")):
        result = CliRunner().invoke(app, ["export", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
