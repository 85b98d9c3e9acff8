"""Tables of the store. Times are UTC epoch seconds (float): portable, indexable, unambiguous.

Every reading table has a natural key (what, when). Writes use insert-or-ignore on it, so a
reading re-sent after a crash or a retry is stored exactly once.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

zone_readings = Table(
    "zone_readings", metadata,
    Column("zone_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("count", Float, nullable=False),
    Column("count_low", Float),
    Column("count_high", Float),
    Column("area_m2", Float),
    Column("density", Float),
    Column("los", String(1)),
    Column("risk", String(16)),
    Column("coverage_pct", Float),
    PrimaryKeyConstraint("zone_id", "ts", name="pk_zone_readings"),
)

line_readings = Table(
    "line_readings", metadata,
    Column("line_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("period_s", Float, nullable=False),
    Column("in_count", Float, nullable=False),
    Column("out_count", Float, nullable=False),
    Column("flow_pmm", Float),
    PrimaryKeyConstraint("line_id", "ts", name="pk_line_readings"),
)

camera_health = Table(
    "camera_health", metadata,
    Column("camera_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("fps", Float),
    Column("last_frame_ts", Float),
    Column("errors", Integer, nullable=False, default=0),
    Column("message", Text),
    PrimaryKeyConstraint("camera_id", "ts", name="pk_camera_health"),
)

alerts = Table(
    "alerts", metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("raised_ts", Float, nullable=False),
    Column("acknowledged_ts", Float),
    Column("acknowledged_by", String(128)),
    Column("cleared_ts", Float),
    Column("value", Float),
    Column("message", Text),
    Column("occurrences", Integer, nullable=False, default=1, server_default="1"),
    Column("last_raised_ts", Float),
    Column("note", Text),  # the operator's note with the acknowledgement
)

#: What operators did to the measurement itself (a background captured, undone or refused), who
#: and when: the debrief lists it, so a count that changed because of a capture can be traced.
#: Kept like alerts (retention does not delete it); one row per action, never one per person.
audit = Table(
    "audit", metadata,
    Column("ts", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),  # done / refused
    Column("detail", Text),
)

#: Columns added to ``alerts`` after its first release: stores made before get them on open.
ALERT_COLUMNS_ADDED = {"occurrences": "INTEGER NOT NULL DEFAULT 1", "last_raised_ts": "FLOAT",
                       "note": "TEXT"}

Index("ix_zone_readings_ts", zone_readings.c.ts)
Index("ix_line_readings_ts", line_readings.c.ts)
Index("ix_alerts_state", alerts.c.state, alerts.c.raised_ts)
Index("ix_audit_ts", audit.c.ts)

#: Reading tables, their time column and their key columns (used by writes, queries, retention).
READING_TABLES: dict[str, tuple[Table, tuple[str, ...]]] = {
    "zone_readings": (zone_readings, ("zone_id", "ts")),
    "line_readings": (line_readings, ("line_id", "ts")),
    "camera_health": (camera_health, ("camera_id", "ts")),
}
