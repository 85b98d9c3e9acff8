"""The one object every route reaches through ``request.app.state.crowdsafe``.

A plain holder instead of module globals, so two apps (tests, or API plus runner in one
process) never share tokens, throttles or stores.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from crowdsafe.api.proxies import Network, parse_networks
from crowdsafe.api.settings import ApiSettings
from crowdsafe.api.throttle import AuthThrottle
from crowdsafe.api.tokens import TokenBook
from crowdsafe.config.site import Site, load_site
from crowdsafe.geometry.siteview import SiteView, build_site_view
from crowdsafe.store import Store


@dataclass
class ApiState:
    settings: ApiSettings
    store: Store
    site_view: SiteView
    tokens: TokenBook
    throttle: AuthThrottle
    trusted_proxies: tuple[Network, ...] = ()
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def reload_site(self, announce: bool = True) -> SiteView:
        """Re-read the site file; a SiteError leaves the current view in place. ``announce``: tell
        the other API worker processes, if any, to re-read it too (not when they told this one)."""
        with self._reload_lock:
            self.site_view = build_site_view(load_site(self.settings.site_file))
            if announce and self.settings.announce_reload is not None:
                self.settings.announce_reload()
            return self.site_view


def load_state(settings: ApiSettings, store: Store) -> ApiState:
    site: Site = settings.site or load_site(settings.site_file)
    return ApiState(settings=settings, store=store, site_view=build_site_view(site),
                    tokens=TokenBook(settings.tokens_file),
                    throttle=AuthThrottle(settings.auth_fail_limit, settings.auth_fail_window_s),
                    trusted_proxies=parse_networks(settings.trusted_proxies))


def api_state(request: Request) -> ApiState:
    return request.app.state.crowdsafe
