"""Joining a Ray cluster from ``--cluster``: ``ray://HOST:PORT``, ``HOST:PORT`` or ``auto``.

Why and how: docs/design-notes.md, ``crowdsafe.runtime.ray.cluster``."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from crowdsafe.runtime.ray import RAY_EXTRA_HINT, ray_available

log = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class ClusterError(RuntimeError):
    """The cluster address is malformed or the cluster cannot be reached; the message says which."""


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    nodes: int
    cpus: float
    gpus: float
    started_here: bool  # a one-machine cluster this run started
    owned: bool  # this run called ray.init, so it disconnects (and stops what it started) at the end


def check_address(address: str) -> str:
    """``address`` if it has one of the accepted forms, else ClusterError."""
    text = address.strip()
    if text == "auto":
        return text
    rest = text.removeprefix("ray://")
    if _HOST_PORT.match(rest) and 0 < int(rest.rsplit(":", 1)[1]) < 65536:
        return text
    raise ClusterError(f"--cluster: {address!r} is not ray://HOST:PORT, HOST:PORT or auto")


def connect(address: str, *, local_cpus: int | None = None) -> ClusterInfo:
    """Join (or, for ``auto`` on a machine without a cluster, start) Ray; reuse it if already up."""
    address = check_address(address)
    if not ray_available():
        raise ClusterError(RAY_EXTRA_HINT)
    if address != "auto" and "ray" not in sys.modules:  # Ray reads the mode when it is imported
        _use_token_if_there()
    import ray

    started_here = owned = False
    if not ray.is_initialized():
        owned = True
        quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # Ray Client's timeout warning: said below
                if address == "auto":
                    try:
                        ray.init(address="auto", **quiet)
                    except ConnectionError:
                        log.info("no Ray cluster on this machine; starting a local one")
                        ray.init(address="local", num_cpus=local_cpus or os.cpu_count(),
                                 include_dashboard=False, **quiet)
                        started_here = True
                else:
                    ray.init(address=address, **quiet)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot join the Ray cluster at {address}: {first}") from None
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address, nodes, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)),
                       started_here, owned)


def _use_token_if_there() -> None:
    """Send the cluster's auth token when this machine has one and the mode is not set.

    Ray 2.60 clusters started with ``ray start`` require a token (``~/.ray/auth_token``, or
    ``RAY_AUTH_TOKEN``), but a driver joining an existing cluster sends it only in token mode.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def disconnect(info: ClusterInfo) -> None:
    import ray

    if ray.is_initialized() and info.owned:
        ray.shutdown()
