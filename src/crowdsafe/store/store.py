"""The store: idempotent writes, time-range queries, retention and export, on SQLite or PostgreSQL.

SQLAlchemy Core (not the ORM) keeps it one thin layer: the same statements run on the embedded
SQLite file (WAL mode, so the API can read while the pipeline writes) and on PostgreSQL.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    and_,
    case,
    cast,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import NoSuchModuleError, OperationalError, SQLAlchemyError

from crowdsafe.store.schema import ALERT_COLUMNS_ADDED, READING_TABLES, alerts, audit, metadata
from crowdsafe.urls import redact

DEFAULT_SQLITE = "crowdsafe.sqlite"


class StoreError(RuntimeError):
    """The store cannot be opened or written; nothing already stored is lost."""


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL from a file path, ``sqlite:///...`` or ``postgresql://...``."""
    text = str(target)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def open_store(target: str | Path = DEFAULT_SQLITE) -> Store:
    """Open (and create the tables of) a store; errors say what to install or start."""
    url = database_url(target)
    try:
        if url.startswith("sqlite"):
            # Connections are pooled, not opened per transaction: each opening runs the pragmas,
            # and closing the last one checkpoints the WAL into the file, I/O and CPU taken from
            # the counting engine's cores for every frame's rows.
            engine = create_engine(url, pool_size=2, max_overflow=8)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(f"no database driver for {url.split('://')[0]}: "
                         "pip install 'crowdsafe[postgres]'") from exc
    try:
        metadata.create_all(engine)
        _add_missing_columns(engine)
    except OperationalError as exc:
        raise StoreError(f"cannot open store {_safe(url)}: {exc.orig}") from exc
    return Store(engine)


def _add_missing_columns(engine: Engine) -> None:
    """Give a store made by an older release the alert columns added since (``create_all`` does not).

    Only additive, nullable-or-defaulted columns, so older readers of the same store keep working.
    """
    present = {c["name"] for c in inspect(engine).get_columns("alerts")}
    missing = {name: ddl for name, ddl in ALERT_COLUMNS_ADDED.items() if name not in present}
    if missing:
        with engine.begin() as conn:
            for name, ddl in missing.items():
                conn.execute(text(f"ALTER TABLE alerts ADD COLUMN {name} {ddl}"))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _safe(url: str) -> str:
    """The URL without a password, for error messages and logs."""
    return redact(url)


class Store:
    """Readings, alerts and camera health over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # -- writes --------------------------------------------------------------------------
    def write(self, table_name: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert readings, ignoring ones already stored (same key); returns how many were new."""
        return self.write_many([(table_name, rows)])[0]

    def write_many(self, batches: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[int]:
        """Several batches of readings (of any reading tables) in one transaction, each as ``write``;
        returns how many of each batch were new. One transaction a frame, not one a table (or a
        few frames in one): on SQLite each costs a connection, its pragmas and a WAL commit."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        work = []
        for table_name, rows in batches:
            table, keys = self._reading_table(table_name)
            clean = [self._check_row(table_name, keys, row) for row in rows]
            # RETURNING tells us which rows were new on both dialects (executemany rowcount does not).
            stmt = (insert(table).on_conflict_do_nothing(index_elements=list(keys))
                    .returning(table.c[keys[0]]))
            work.append((stmt, clean))
        if not any(clean for _, clean in work):
            return [0] * len(work)
        total = sum(len(clean) for _, clean in work)
        names = ", ".join(sorted({name for name, _ in batches}))
        try:
            with self.engine.begin() as conn:
                return [len(conn.execute(stmt, clean).all()) if clean else 0 for stmt, clean in work]
        except SQLAlchemyError as exc:
            raise StoreError(f"could not write {total} {names}: {exc}") from exc

    @staticmethod
    def _check_row(table_name: str, keys: Iterable[str], row: Mapping[str, Any]) -> dict[str, Any]:
        for key in keys:
            if row.get(key) is None:
                raise StoreError(f"{table_name}: row without {key}: {dict(row)}")
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise StoreError(f"{table_name}: non-finite {', '.join(bad)} in {dict(row)}")
        return dict(row)

    #: Written by the API (an operator), not by the alert engine: an engine update never blanks them.
    _OPERATOR_COLUMNS = ("acknowledged_ts", "acknowledged_by", "note")

    def save_alert(self, alert: Mapping[str, Any]) -> None:
        """Insert an alert or update its state (raised -> acknowledged -> cleared, or reopened).

        The engine does not know about acknowledgements made through the API, so its rows carry
        None there; an update keeps what the operator wrote unless a new value is given.
        """
        row = dict(alert)
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(alerts).values(row)
        set_ = {k: (func.coalesce(stmt.excluded[k], alerts.c[k]) if k in self._OPERATOR_COLUMNS
                    else stmt.excluded[k]) for k in row if k != "alert_id"}
        if "state" in row:
            # The engine re-saves an open alert as its message changes; "raised" from it must not undo
            # an operator's acknowledgement of the same occurrence (a new occurrence is raised again).
            same = alerts.c.occurrences == func.coalesce(stmt.excluded.occurrences, alerts.c.occurrences)
            keep = and_(stmt.excluded.state == "raised", alerts.c.state == "acknowledged", same)
            set_["state"] = case((keep, alerts.c.state), else_=stmt.excluded.state)
        stmt = stmt.on_conflict_do_update(index_elements=["alert_id"], set_=set_)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def acknowledge(self, alert_id: str, by: str, ts: float, note: str | None = None) -> bool:
        """Acknowledge a raised alert (with an optional note); False when it is not raised."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alerts).where(and_(alerts.c.alert_id == alert_id, alerts.c.state == "raised"))
                .values(state="acknowledged", acknowledged_ts=ts, acknowledged_by=by, note=note))
        return bool(result.rowcount)

    def record(self, row: Mapping[str, Any]) -> None:
        """One row of the audit trail (``schema.audit``): an operator's action on the measurement."""
        values = {k: row.get(k) for k in ("ts", "actor", "action", "subject", "outcome", "detail")}
        with self.engine.begin() as conn:
            conn.execute(insert(audit).values(values))

    def audit_trail(self, start: float | None = None, end: float | None = None,
                    limit: int = 10_000) -> list[dict[str, Any]]:
        """Audit rows in [start, end), oldest first."""
        conds = []
        if start is not None:
            conds.append(audit.c.ts >= start)
        if end is not None:
            conds.append(audit.c.ts < end)
        stmt = select(audit).where(and_(true(), *conds)).order_by(audit.c.ts).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    # -- reads ---------------------------------------------------------------------------
    def query(self, table_name: str, key: str | None = None, start: float | None = None,
              end: float | None = None, limit: int = 100_000) -> list[dict[str, Any]]:
        """Readings in [start, end), oldest first, optionally for one zone/line/camera."""
        table, keys = self._reading_table(table_name)
        conds = []
        if key is not None:
            conds.append(table.c[keys[0]] == key)
        if start is not None:
            conds.append(table.c.ts >= start)
        if end is not None:
            conds.append(table.c.ts < end)
        stmt = select(table).where(*conds).order_by(table.c.ts, table.c[keys[0]]).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def latest(self, table_name: str) -> list[dict[str, Any]]:
        """The newest reading of every zone/line/camera."""
        table, keys = self._reading_table(table_name)
        newest = (select(table.c[keys[0]].label("k"), func.max(table.c.ts).label("ts"))
                  .group_by(table.c[keys[0]]).subquery())
        stmt = (select(table).join(newest, and_(table.c[keys[0]] == newest.c.k, table.c.ts == newest.c.ts))
                .order_by(table.c[keys[0]]))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def history(self, table_name: str, key: str, column: str, start: float, end: float,
                resolution_s: float) -> list[tuple[float, float, float, float]]:
        """(bucket start, mean, min, max) of one column per time bucket: charts at any zoom."""
        table, keys = self._reading_table(table_name)
        if resolution_s <= 0:
            raise StoreError("resolution must be positive")
        scaled = table.c.ts / resolution_s
        bucket = func.floor(scaled) if self.dialect == "postgresql" else cast(scaled, Integer)
        col = table.c[column]
        stmt = (select(bucket.label("b"), func.avg(col), func.min(col), func.max(col))
                .where(table.c[keys[0]] == key, table.c.ts >= start, table.c.ts < end,
                       col.is_not(None))  # an unmeasured value (no camera sees the zone) is a gap
                .group_by(bucket).order_by(bucket))
        with self.engine.connect() as conn:
            return [(float(b) * resolution_s, float(a), float(lo), float(hi))
                    for b, a, lo, hi in conn.execute(stmt)]

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        stmt = select(alerts).order_by(alerts.c.raised_ts.desc())
        if state:
            stmt = stmt.where(alerts.c.state == state)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    # -- retention and export -----------------------------------------------------------
    def delete_older_than(self, cutoff_ts: float) -> dict[str, int]:
        """Retention: drop readings before the cutoff and cleared alerts raised before it."""
        removed: dict[str, int] = {}
        with self.engine.begin() as conn:
            for name, (table, _) in READING_TABLES.items():
                removed[name] = conn.execute(table.delete().where(table.c.ts < cutoff_ts)).rowcount
            removed["alerts"] = conn.execute(alerts.delete().where(
                and_(alerts.c.state == "cleared", alerts.c.raised_ts < cutoff_ts))).rowcount
        return removed

    def export_csv(self, table_name: str, path: Path, start: float | None = None,
                   end: float | None = None) -> int:
        rows = self.query(table_name, start=start, end=end, limit=10_000_000)
        table, _ = self._reading_table(table_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[c.name for c in table.columns])
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)

    @staticmethod
    def _reading_table(name: str) -> tuple[Any, tuple[str, ...]]:
        try:
            return READING_TABLES[name]
        except KeyError:
            raise StoreError(f"unknown table {name!r}; one of {sorted(READING_TABLES)}") from None

