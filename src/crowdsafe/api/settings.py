"""Everything the API needs to start, in one frozen value the CLI and the runner both build."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crowdsafe.config.site import Site

#: Same default as ``crowdsafe run``, so ``serve`` finds the runner's store, tokens and backgrounds.
DEFAULT_STATE_DIR = Path("crowdsafe-state")
TOKENS_FILE = "tokens.json"
BACKGROUNDS_DIR = "backgrounds"


@dataclass(frozen=True)
class RuntimeStats:
    """What only a runner in the same process knows; exported as metrics when a provider is given."""

    pipeline_latency_s: Mapping[str, float] = field(default_factory=dict)  # camera id -> last frame's
    queue_depth: int | None = None
    dropped: Mapping[str, int] = field(default_factory=dict)  # camera id -> samples replaced unprocessed
    camera_fps: Mapping[str, float] = field(default_factory=dict)  # camera id -> frames read per s, now
    processing_s: Mapping[str, float] = field(default_factory=dict)  # camera id -> stage-chain time, last
    frames: Mapping[str, int] = field(default_factory=dict)  # camera id -> frames counted since start


@dataclass(frozen=True)
class ApiSettings:
    site_file: Path
    store: str | None = None  # SQLite path or URL; default: crowdsafe.sqlite in the state dir
    state_dir: Path = DEFAULT_STATE_DIR
    host: str = "127.0.0.1"
    port: int = 8080
    site: Site | None = None  # already loaded (the runner has it); else read from site_file
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all, browsers block other origins
    max_body_bytes: int = 64 * 1024
    auth_fail_limit: int = 10  # failed authentications per client address within the window ...
    auth_fail_window_s: float = 60.0  # ... before it gets 429 for the rest of the window (valid tokens pass)
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose X-Forwarded-For names the client
    sse_poll_s: float = 1.0
    sse_heartbeat_s: float = 15.0
    sse_queue_size: int = 512  # events a slow client may fall behind before it is disconnected
    sse_max_clients: int = 256
    sse_max_per_token: int = 8  # streams one token may hold: a few tabs and screens, never the pool
    sse_max_per_client: int = 16  # streams one client address may hold, whatever tokens it uses
    sse_operator_reserve: float = 0.25  # share of the pool only operator and admin tokens may take
    sse_lookback_s: float = 10.0  # rows arriving late (older ts than the newest seen) within this window
    api_threads: int = 8  # worker threads for blocking endpoints (anyio's default is 40): the counting
    # engine shares this process's cores, and 40 threads reading the store at once starve it
    api_nice: int = 10  # beside a runner (serve_in_thread, Linux), the API's threads run this much
    # nicer than the counting threads, so under a request burst the engine gets the cores first
    runtime_stats: Callable[[], RuntimeStats] | None = None
    # A runner in the same process: the newest row per zone/line (table name -> rows, or None when
    # it has none yet), so the latest-reading endpoints skip the store; None: always the store.
    latest_rows: Callable[[str], list[dict[str, Any]] | None] | None = None
    #: Take a camera's latest density as its background (an operator, while the site is empty);
    #: None when no runner runs in this process. Returns (captured, the camera's background
    #: status or why it was refused: no frame yet, or a person in view by density or motion).
    capture_background: Callable[[str], tuple[bool, str]] | None = None
    #: Restore the background in use before the camera's last capture: (undone, status or why not).
    undo_background: Callable[[str], tuple[bool, str]] | None = None
    #: With several API worker processes: tell the others this one re-read the site file (they
    #: re-read it too, within ``api.channel.MIRROR_EVERY_S``); returns the new site generation.
    announce_reload: Callable[[], int] | None = None
    forecast_fit: Callable[..., Any] | None = None  # the forecaster's model fit; None: its own
    log_level: str = "info"

    @property
    def store_target(self) -> str:
        return self.store or str(self.state_dir / "crowdsafe.sqlite")

    @property
    def tokens_file(self) -> Path:
        return self.state_dir / TOKENS_FILE

    @property
    def backgrounds_dir(self) -> Path:
        return self.state_dir / BACKGROUNDS_DIR
