"""The few reads ``Store`` has no method for: one alert, alert changes, rows since a time, totals.

Kept here, read-only, so the store's interface stays what the writers need; they use the same
tables through the store's engine and so work on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select

from crowdsafe.store.schema import READING_TABLES, alerts
from crowdsafe.store.store import Store


def alert(store: Store, alert_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
    return dict(row._mapping) if row else None


def alerts_changed_since(store: Store, since: float, limit: int = 1_000) -> list[dict[str, Any]]:
    """Alerts raised, reopened, acknowledged or cleared at or after ``since``."""
    stmt = (select(alerts).where(or_(alerts.c.raised_ts >= since, alerts.c.acknowledged_ts >= since,
                                     alerts.c.cleared_ts >= since, alerts.c.last_raised_ts >= since))
            .order_by(alerts.c.raised_ts).limit(limit))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def alert_list(store: Store, state: str | None, limit: int) -> list[dict[str, Any]]:
    stmt = select(alerts).order_by(alerts.c.raised_ts.desc()).limit(limit)
    if state:
        stmt = stmt.where(alerts.c.state == state)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def newest_ts(store: Store, table_name: str) -> float | None:
    table, _ = READING_TABLES[table_name]
    with store.engine.connect() as conn:
        value = conn.execute(select(func.max(table.c.ts))).scalar()
    return None if value is None else float(value)


def newest_alert_ts(store: Store) -> float | None:
    cols = (alerts.c.raised_ts, alerts.c.acknowledged_ts, alerts.c.cleared_ts, alerts.c.last_raised_ts)
    with store.engine.connect() as conn:
        values = conn.execute(select(*[func.max(c) for c in cols])).one()
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


def alerts_raised_between(store: Store, start: float, end: float,
                          limit: int = 100_000) -> list[dict[str, Any]]:
    """Alerts raised in [start, end), oldest first: the alerts of one period (the report's)."""
    stmt = (select(alerts).where(alerts.c.raised_ts >= start, alerts.c.raised_ts < end)
            .order_by(alerts.c.raised_ts, alerts.c.alert_id).limit(limit))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def line_totals(store: Store, since: float, until: float) -> dict[str, tuple[float, float]]:
    """People that crossed each line in [since, until): (in, out), summed over the readings."""
    table, _ = READING_TABLES["line_readings"]
    stmt = (select(table.c.line_id, func.sum(table.c.in_count), func.sum(table.c.out_count))
            .where(table.c.ts >= since, table.c.ts < until).group_by(table.c.line_id))
    with store.engine.connect() as conn:
        return {lid: (float(i or 0.0), float(o or 0.0)) for lid, i, o in conn.execute(stmt)}


def latest_rows(state: Any, table: str) -> list[dict[str, Any]]:
    """The newest row per zone or line: from the runner's in-memory snapshot when the API runs
    beside one (no SQL per request), else from the store."""
    provider = state.settings.latest_rows
    rows = provider(table) if provider is not None else None
    return rows if rows is not None else state.store.latest(table)
