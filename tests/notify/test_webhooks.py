"""Webhooks against a real HTTP server on 127.0.0.1: retries, dead targets never block."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from crowdsafe.notify.webhooks import WebhookNotifier


class Receiver(BaseHTTPRequestHandler):
    fail_first = 0
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
        else:
            Receiver.received.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.02)
    return cond()


def test_delivers_after_transient_failures(receiver):
    Receiver.fail_first = 2
    notifier = WebhookNotifier([receiver], backoff_s=0.05)
    notifier.send({"alert_id": "a1", "state": "raised"})
    assert wait_for(lambda: notifier.stats.delivered == 1)
    assert Receiver.received == [{"alert_id": "a1", "state": "raised"}]
    assert notifier.stats.retries == 2
    notifier.close()


def test_dead_target_never_blocks_and_is_counted():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = WebhookNotifier([f"http://127.0.0.1:{port}/"], max_queue=3, attempts=2, backoff_s=0.05)
    start = time.monotonic()
    for i in range(50):
        notifier.send({"n": i})
    assert time.monotonic() - start < 0.5  # enqueue only
    assert wait_for(lambda: notifier.stats.failed >= 1)
    assert notifier.stats.dropped >= 40
    notifier.close(deadline_s=2)


def test_non_http_url_refused():
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier(["file:///etc/passwd"])
