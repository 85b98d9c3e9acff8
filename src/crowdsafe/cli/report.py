"""``crowdsafe report SITE.yaml``: the event debrief of a period as one self-contained HTML file.

For the people who sign off the next event (safety officer, licensing authority, organiser):
plots rather than CSV rows, readable offline and printable, from the same store the API reads.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import crowdsafe.store.queries as queries
from crowdsafe.api.settings import BACKGROUNDS_DIR
from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.config.site import Site, load_site
from crowdsafe.store import Store, StoreError, open_store

if TYPE_CHECKING:  # the report modules load numpy and the forecaster: only when a report is made
    from crowdsafe.report.compute import SignOff


def parse_time(text: str) -> float:
    """Epoch seconds ('1764950400') or ISO 8601 ('2026-12-05T18:00', '...+01:00'); no offset means UTC."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise typer.BadParameter(f"{text!r}: give epoch seconds or an ISO 8601 time") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text!r} is not a time")
    return value


def stored_span(store: Store) -> tuple[float, float] | None:
    """First and last zone-reading times (+1 s, the end being exclusive), or None for an empty store."""
    first = store.query("zone_readings", limit=1)
    last = queries.newest_ts(store, "zone_readings")
    if not first or last is None:
        return None
    return float(first[0]["ts"]), last + 1.0


def make_report(store: Store, site: Site, start: float, end: float, out: Path, pdf: Path | None = None,
                backgrounds_dir: Path | None = None, signoff: SignOff | None = None) -> int:
    """Compute and write the report; returns the HTML's size in bytes (shared with ``demo --report``)."""
    from crowdsafe.report.compute import build_report
    from crowdsafe.report.render import write_report

    report = build_report(store, site, start, end, backgrounds_dir=backgrounds_dir, signoff=signoff)
    return write_report(report, out, pdf, generated_ts=time.time())


def report(
    site_file: Annotated[Path, typer.Argument(help="Site YAML file the readings were measured with.")],
    store: Annotated[str, typer.Option(help="SQLite file or postgresql:// URL.")] = "crowdsafe.sqlite",
    start: Annotated[str | None, typer.Option(
        "--from", help="Start: epoch seconds or ISO 8601 (UTC unless an offset is given). "
        "Default: the first stored reading.", show_default=False)] = None,
    end: Annotated[str | None, typer.Option(
        "--to", help="End (exclusive), same formats. Default: just after the last stored reading.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    pdf: Annotated[Path | None, typer.Option(help="Also write a PDF of the summary and every chart.",
                                             show_default=False)] = None,
    backgrounds: Annotated[Path | None, typer.Option(
        help="Folder of people-free backgrounds (<camera>.jpg). Default: backgrounds/ next to a "
        "SQLite store.", show_default=False)] = None,
    prepared_by: Annotated[str, typer.Option(help="Name in the sign-off block (blank: on paper).")] = "",
    reviewed_by: Annotated[str, typer.Option(help="Name in the sign-off block (blank: on paper).")] = "",
    signed_date: Annotated[str, typer.Option("--date", help="Date in the sign-off block.")] = "",
) -> None:
    """Write the event debrief: peaks, time in bands, gates, alerts, staffing, egress, data quality."""
    with user_errors():
        site = load_site(site_file)
    if "://" not in store and not Path(store).is_file():
        raise fail(f"store {store} does not exist")
    if backgrounds is None and "://" not in store:
        candidate = Path(store).resolve().parent / BACKGROUNDS_DIR
        backgrounds = candidate if candidate.is_dir() else None
    try:
        db = open_store(store)
        try:
            t0 = parse_time(start) if start is not None else None
            t1 = parse_time(end) if end is not None else None
            if t0 is None or t1 is None:
                span = stored_span(db)
                if span is None:
                    raise fail("the store holds no zone readings; give --from and --to")
                t0 = span[0] if t0 is None else t0
                t1 = span[1] if t1 is None else t1
            if not t1 > t0:
                raise fail("--to must be after --from")
            from crowdsafe.report.compute import SignOff

            with user_errors():
                size = make_report(db, site, t0, t1, out, pdf, backgrounds,
                                   SignOff(prepared_by.strip(), reviewed_by.strip(), signed_date.strip()))
        finally:
            db.close()
    except StoreError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"report written to {out} ({size / 1e6:.2f} MB)" + (f" and {pdf}" if pdf else ""))
