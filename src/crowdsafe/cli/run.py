"""``crowdsafe run SITE.yaml``: count every camera of a site into the store, and serve the API
and dashboard over it, until stopped.

Everything that can be checked before the engine starts (site file, sources, calibration,
store, the API's port) is checked first, so mistakes cost milliseconds and one line on stderr
(exit 2). Once running, SIGINT or SIGTERM stops it cleanly (exit 0): the runner flushes the
store first, then the API closes; a second signal kills it at once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from crowdsafe.cli.errors import err_console, fail, user_errors
from crowdsafe.cli.live import ready_or_fail, start_api, token_hint
from crowdsafe.cli.options import (
    ApiWorkersOption,
    CorsOriginOption,
    EngineChoice,
    EngineOption,
    LiveSiteFile,
    LiveStoreOption,
    PrecisionChoice,
    PrecisionOption,
    ThreadsOption,
    TrustedProxyOption,
    announce_precision,
    counter_factory,
    engine_spec,
    log_to_stderr,
)
from crowdsafe.cli.serve import checked_proxies
from crowdsafe.config.site import load_site
from crowdsafe.runtime.allocator import tune_malloc
from crowdsafe.runtime.background import BackgroundPolicy
from crowdsafe.runtime.core import PreparedSite, RunnerConfig, RunSummary, SiteRunner, prepare_site
from crowdsafe.runtime.counters import CameraCounters, engine_name
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.pipeline import FrameOutput
from crowdsafe.store.store import StoreError, open_store

DEFAULT_STATE_DIR = Path("crowdsafe-state")


def frame_line(output: FrameOutput) -> str:
    """One line per counted frame: enough to watch a site from a terminal."""
    clock = time.strftime("%H:%M:%S", time.localtime(output.ts))
    zones = "  ".join(
        f"{z.zone_id} {z.count:.1f}" + (f" ({z.density:.2f}/m² {z.los})" if z.los is not None else "")
        for z in output.zones)
    lines = "  ".join(f"{r['line_id']} in {r['in_count']:.1f} out {r['out_count']:.1f} "
                      f"({r['flow_pmm']:.1f} p/m/min)" for r in output.line_rows)
    spent = sum(output.timings.values())
    parts = [f"{clock} {output.camera_id}: {output.count:.1f} people", zones, lines, f"{spent:.1f} s"]
    return " | ".join(p for p in parts if p)


def summary_lines(summary: RunSummary) -> list[str]:
    frames = ", ".join(f"{cid} {n}" for cid, n in sorted(summary.frames.items())) or "none"
    dropped = sum(summary.dropped.values())
    st = summary.store
    sampled = sum(h.samples for h in summary.health)
    # frames/s next to the samples the cameras offered per second: equal when the engine keeps up
    rate = f" of {sampled / summary.seconds:.2f} sampled" if sampled and summary.seconds > 0 else ""
    # what the pipeline could take (as bench --site measures it) beside what the sampling gave it
    capacity = f", capacity {summary.capacity_fps:.2f} frames/s" if summary.busy_s > 0 else ""
    out = [f"ran {summary.seconds:.1f} s: {summary.frames_total} frames counted ({frames}), "
           f"{summary.fps:.2f} frames/s{rate}{capacity}, {dropped} samples dropped (engine busy), "
           f"{summary.errors} failed",
           f"store: {st.written} rows written, {st.ignored} already there, {st.dropped} dropped, "
           f"{st.pending} unwritten; alert changes {summary.alert_changes}; backgrounds saved "
           f"{summary.backgrounds}; peak memory {summary.peak_rss_mb:.0f} MB"]
    out += [f"camera {h.camera_id}: {h.status}; {h.message()}" for h in summary.health]
    return out


def install_signals(runner: SiteRunner) -> None:
    """First SIGINT/SIGTERM: a clean stop (store flushed); a second: the default, immediate end."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        runner.request_stop(signal.Signals(signum).name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # a second signal ends the process at once

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _prepare(site_file: Path, loop: bool) -> PreparedSite:
    with user_errors():
        return prepare_site(load_site(site_file), loop=loop)


def run(
    ctx: typer.Context,
    site_file: LiveSiteFile,
    store: LiveStoreOption = None,
    state_dir: Annotated[Path, typer.Option(
        help="Folder for the store (by default) and people-free backgrounds.")] = DEFAULT_STATE_DIR,
    duration: Annotated[float | None, typer.Option(
        min=0.0, help="Stop after this many seconds. Default: run until SIGINT/SIGTERM.",
        show_default=False)] = None,
    engine: EngineOption = EngineChoice.auto,
    precision: PrecisionOption = PrecisionChoice.auto,
    threads: ThreadsOption = None,
    webhook: Annotated[list[str] | None, typer.Option(
        help="POST alert changes as JSON to this URL (repeatable).", show_default=False)] = None,
    loop: Annotated[bool, typer.Option(
        help="Loop video files and image folders, as if they were live cameras.")] = True,
    health_every: Annotated[float, typer.Option(
        min=0.5, help="Seconds between camera health rows.")] = 10.0,
    quiet: Annotated[bool, typer.Option(help="Print only the summary, not a line per frame.")] = False,
    retention_days: Annotated[float | None, typer.Option(
        min=0.0, help="Delete readings, health rows and cleared alerts older than this many days (checked "
                      "hourly). Default: keep everything.", show_default=False)] = None,
    background_max_people: Annotated[float | None, typer.Option(
        min=0.0, help="Publish a camera's background only if the counter finds fewer people in it than "
                      "this. Default: a relative rule (no more than in the emptiest recent frame), since "
                      "the dense model reports ~16 on empty scenes.", show_default=False)] = None,
    background_spacing: Annotated[float, typer.Option(
        min=0.0, help="Least seconds between the frames a camera's background median is made of, so "
                      "people walking through are in few of them; 0 takes every sampled frame.")] = 15.0,
    serve: Annotated[bool, typer.Option(
        help="Also serve the API and dashboard (as `crowdsafe serve`), from --api-workers processes.")
    ] = True,
    host: Annotated[str, typer.Option(help="API address; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="API port; 0 picks a free one.")] = 8080,
    cors_origin: CorsOriginOption = None,
    trusted_proxy: TrustedProxyOption = None,
    api_workers: ApiWorkersOption = 1,
    cluster: Annotated[str | None, typer.Option(
        help="Run on a Ray cluster: ray://HOST:PORT, HOST:PORT or auto (this machine's cluster, else a "
             "local one). Needs crowdsafe[ray]; see docs/scaling.md.", show_default=False)] = None,
) -> None:
    """Count every camera of a site, store zone and line readings, raise alerts, serve the dashboard;
    until stopped."""
    log_to_stderr()
    tune_malloc()  # before any thread: bounded RSS over hours (runtime.allocator)
    prepared = _prepare(site_file, loop)
    proxies = checked_proxies(trusted_proxy)
    for url in webhook or []:
        if not url.startswith(("http://", "https://")):
            raise fail(f"--webhook: not an http(s) URL: {url}")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        target = store or str(state_dir / "crowdsafe.sqlite")
        opened = open_store(target)
    except (StoreError, OSError) as exc:
        raise fail(str(exc)) from None
    holder: list[SiteRunner] = []
    api = None
    if serve:  # before the engine: a taken port fails in milliseconds, not after model start-up
        api = start_api(site_file, prepared.site, opened, state_dir, host=host, port=port,
                        cors_origins=tuple(cors_origin or ()), runner_of=lambda: next(iter(holder), None),
                        store_target=target, trusted_proxies=proxies, workers=api_workers)
    try:
        with user_errors():
            # the precision's banner line once the engines or the cluster started: an error stays one line
            spec = engine_spec(engine, precision, threads, announce=False)
            counter = None if cluster else CameraCounters(prepared.plan, spec, counter_factory(ctx))
        config = RunnerConfig(state_dir=state_dir, duration_s=duration, health_every_s=health_every,
                              webhooks=tuple(webhook or ()), forecast_every_s=60.0,
                              retention_s=None if retention_days is None else retention_days * 86400.0,
                              background=BackgroundPolicy(max_people=background_max_people,
                                                          min_spacing_s=background_spacing))
        on_frame = None if quiet else (lambda output: typer.echo(frame_line(output)))
        if cluster:  # the same stages on Ray actors (docs/architecture.md); Ray is imported only on this path
            from crowdsafe.runtime.ray.cluster import ClusterError
            from crowdsafe.runtime.ray.launch import cluster_runner

            def announce(line: str) -> None:
                err_console.print(line, highlight=False, markup=False, soft_wrap=True)

            try:
                runner = cluster_runner(cluster, prepared, opened, spec,
                                        config, on_frame, announce=announce)
            except ClusterError as exc:
                raise fail(str(exc)) from None
        else:
            assert counter is not None
            runner = local_runner(prepared, opened, counter, config, on_frame=on_frame)
        holder.append(runner)
        install_signals(runner)
        site = prepared.site
        announce_precision(precision)
        typer.echo(f"running site '{site.name}': {len(site.cameras)} camera(s), {len(site.zones)} zone(s), "
                   f"{len(site.lines)} line(s); state in {state_dir}; Ctrl-C to stop", err=True)
        if counter is not None:
            typer.echo(f"models: {engine_name(counter)}: {counter.describe()}", err=True)
        if api is not None:
            ready_or_fail(api)
            typer.echo(f"dashboard and API: {api.url}/ (API docs at /docs, metrics at /metrics)", err=True)
            if (hint := token_hint(state_dir)) is not None:
                err_console.print(hint, highlight=False, markup=False)
        summary = runner.run()
    finally:
        if api is not None:
            api.stop()
        opened.close()
    for line in summary_lines(summary):
        typer.echo(line)
    if not summary.flushed:
        raise typer.Exit(1)
