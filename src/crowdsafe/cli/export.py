"""``crowdsafe export``: readings from the store to CSV or Parquet for reports and analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.errors import fail
from crowdsafe.store import StoreError, open_store
from crowdsafe.store.schema import READING_TABLES


def export(
    out: Annotated[Path, typer.Argument(help="Output file; .csv or .parquet.")],
    store: Annotated[str, typer.Option(help="SQLite file or postgresql:// URL.")] = "crowdsafe.sqlite",
    table: Annotated[str, typer.Option(help=f"One of: {', '.join(READING_TABLES)}.")] = "zone_readings",
    since: Annotated[float | None, typer.Option(help="Start, UTC epoch seconds.")] = None,
    until: Annotated[float | None, typer.Option(help="End (exclusive), UTC epoch seconds.")] = None,
) -> None:
    """Write stored readings (never images) to CSV, or Parquet with `pip install pyarrow`."""
    if "://" not in store and not Path(store).is_file():
        raise fail(f"store {store} does not exist")
    try:
        db = open_store(store)
        if out.suffix.lower() == ".parquet":
            n = _parquet(db.query(table, start=since, end=until, limit=100_000_000), out)
        elif out.suffix.lower() == ".csv":
            n = db.export_csv(table, out, since, until)
        else:
            raise fail(f"{out}: use a .csv or .parquet file name")
    except StoreError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{n} {table} rows written to {out}")


def _parquet(rows: list[dict], out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise fail("Parquet export needs pyarrow: pip install pyarrow (or export to .csv)") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return len(rows)
