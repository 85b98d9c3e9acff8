"""The store writer: a few frames' rows in one transaction, and a refused batch dropped alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from crowdsafe.runtime.writer import StoreWriter
from crowdsafe.store.store import open_store


def _zone_rows(ts: float) -> list[dict[str, object]]:
    return [{"zone_id": z, "ts": ts, "count": 3.0} for z in ("walkway", "lawn")]


def _line_rows(ts: float) -> list[dict[str, object]]:
    return [{"line_id": "east_gate", "ts": ts, "period_s": 1.0, "in_count": 1.0, "out_count": 0.0}]


def test_frames_queued_together_go_in_one_transaction_and_every_row_is_stored(tmp_path: Path):
    store = open_store(tmp_path / "s.sqlite")
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    writer = StoreWriter(store, gather_s=0.5)
    for k in range(20):  # 20 frames, two tables each, queued within one gathering
        writer.write("zone_readings", _zone_rows(float(k)))
        writer.write("line_readings", _line_rows(float(k)))
    assert writer.close()
    assert len(store.query("zone_readings")) == 40 and len(store.query("line_readings")) == 20
    assert writer.stats.written == 60 and writer.stats.dropped == 0
    # one a frame and table before: 40; the first batch may go alone before the rest arrive
    assert 1 <= len(commits) <= 3
    store.close()


def test_a_refused_batch_is_dropped_alone_and_its_group_is_stored(tmp_path: Path):
    store = open_store(tmp_path / "s.sqlite")
    writer = StoreWriter(store, gather_s=0.5)
    writer.write("zone_readings", _zone_rows(1.0))
    writer.write("line_readings", [{"line_id": "east_gate", "ts": 1.0, "period_s": 1.0,
                                    "in_count": float("nan"), "out_count": 0.0}])  # a bad row
    writer.save_alert({"alert_id": "a1", "rule": "r", "subject": "walkway", "severity": "warning",
                       "state": "raised", "raised_ts": 1.5, "value": 2.0, "message": "busy"})
    writer.write("zone_readings", _zone_rows(2.0))
    writer.write("line_readings", _line_rows(2.0))
    assert writer.close()
    assert [r["ts"] for r in store.query("zone_readings")] == [1.0, 1.0, 2.0, 2.0]
    assert [r["ts"] for r in store.query("line_readings")] == [2.0]
    assert writer.stats.dropped == 1 and writer.stats.written == 6
    assert "non-finite in_count" in writer.stats.last_error
    assert [a["alert_id"] for a in store.alerts()] == ["a1"]
    store.close()
