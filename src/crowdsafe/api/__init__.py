"""HTTP API and live dashboard: REST, Server-Sent Events, Prometheus metrics, bearer tokens with roles.

The API only reads the store (and the people-free background JPEGs), so it works with a store
filled by the local runner, the Ray runner, or a test writing rows directly.
"""

from crowdsafe.api.app import create_app
from crowdsafe.api.server import ServerHandle, serve_in_thread
from crowdsafe.api.settings import ApiSettings, RuntimeStats

__all__ = ["ApiSettings", "RuntimeStats", "ServerHandle", "create_app", "serve_in_thread"]
