"""``crowdsafe run SITE.yaml --cluster ADDRESS``: the command's Ray branch, kept out of ``cli.run``.

``cli.run`` checks the site, sources and store exactly as for a local run and, where it would
build the local runner, asks :func:`cluster_runner` for the same runner core counting on the cluster
(:class:`RayCounting`: the API, signals, summary and exit codes work unchanged). Ray is
imported only on this path, so the core install never needs it. Joining the cluster and
starting the actors happen here, before the run, so an unreachable cluster or a replica that
cannot load the model is a :class:`ClusterError` raised before the run; ``cli.run`` turns it into
one line on stderr (exit 2), not a traceback. Runtime never imports ``cli`` (issue 17): it raises
typed errors and reports progress through a callback, and the command decides how they look.
"""

from __future__ import annotations

from collections.abc import Callable

from crowdsafe.counting.engines import EngineSpec
from crowdsafe.runtime.core import PreparedSite, RunnerConfig, SiteRunner
from crowdsafe.runtime.pipeline import FrameOutput
from crowdsafe.runtime.ray.cluster import ClusterError, connect, disconnect
from crowdsafe.runtime.ray.runner import RayConfig, RayCounting, ray_runner
from crowdsafe.store.store import Store


def cluster_runner(address: str, prepared: PreparedSite, store: Store, cpu: EngineSpec, config: RunnerConfig,
                   on_frame: Callable[[FrameOutput], None] | None = None,
                   ray_config: RayConfig | None = None,
                   announce: Callable[[str], None] | None = None) -> SiteRunner:
    """A runner counting on the cluster at ``address`` with its actors started.

    Raises :class:`ClusterError` (after leaving the cluster) when the cluster cannot be joined or
    the actors cannot start, so the caller chooses the exit code; ``announce`` receives the one
    progress line said between joining and starting the actors (the CLI prints it on stderr).
    """
    info = connect(address)
    counting = RayCounting(prepared, cpu, ray_config)
    counting.cluster = info
    where = "a one-machine Ray cluster started for this run" if info.started_here else f"Ray at {address}"
    if announce is not None:
        announce(f"cluster: {where}: {info.nodes} node(s), {info.cpus:g} CPUs, {info.gpus:g} GPUs; "
                 "starting readers and model replicas")
    try:
        counting.start_actors()
    except ClusterError:
        disconnect(info)
        raise
    return ray_runner(prepared, store, counting, config, on_frame=on_frame)
