"""A real webhook endpoint on loopback for runner tests: collects every body POSTed to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _ReusableServer(ThreadingHTTPServer):
    # A test that brings the endpoint up on a port the runner was given while it was down must
    # be able to bind it again at once.
    allow_reuse_address = True


def webhook_receiver(sink: list[Any], *, port: int = 0,
                     parse: Callable[[bytes], Any] = json.loads) -> ThreadingHTTPServer:
    """Serve in a daemon thread on ``127.0.0.1:port`` (0: a free one); ``parse(body)`` of each POST
    goes to ``sink`` (JSON by default; pass ``bytes`` to keep raw bodies). Call ``shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sink.append(parse(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = _ReusableServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
