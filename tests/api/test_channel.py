"""The live channel between the counting process and its API workers (``api.channel``): live
numbers and rows cross it, operator actions get their reply, the stream caps are one for all
workers, a site reload in one worker reaches the others, and nobody without the secret gets in."""

from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

import pytest

from crowdsafe.api import ApiSettings, RuntimeStats
from crowdsafe.api.channel import ChannelClient, ChannelServer, LiveMirror, RemoteCaps, remote_action
from crowdsafe.api.events import StreamRefused

ROW = {"zone_id": "walkway", "ts": 1_800_000_000.5, "count": 12.25, "density": 0.04, "los": "A"}


def _settings(**kw: object) -> ApiSettings:
    base = dict(site_file=Path("site.yaml"), sse_max_clients=8, sse_max_per_token=3, sse_max_per_client=5,
                sse_operator_reserve=0.25)
    return ApiSettings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def server():
    calls: list[str] = []

    def capture(camera_id: str) -> tuple[bool, str]:
        calls.append(camera_id)
        return False, "the counter finds a person in view"

    settings = _settings(
        runtime_stats=lambda: RuntimeStats(pipeline_latency_s={"cam": 0.8}, queue_depth=1,
                                           frames={"cam": 42}),
        latest_rows=lambda table: [ROW] if table == "zone_readings" else None,
        capture_background=capture, undo_background=lambda cid: (True, "background in use"))
    channel = ChannelServer(settings).start()
    channel.calls = calls  # type: ignore[attr-defined]
    yield channel
    channel.stop()


def _client(channel: ChannelServer) -> ChannelClient:
    return ChannelClient(**channel.address())


def test_live_rows_stats_and_operator_replies_cross_the_channel(server):
    mirror = LiveMirror(_client(server))
    mirror.refresh(lambda: None)
    assert mirror.latest_rows("zone_readings") == [ROW]
    assert mirror.latest_rows("line_readings") is None  # none yet: the API asks the store
    stats = mirror.runtime_stats()
    assert stats.frames == {"cam": 42} and stats.queue_depth == 1 and stats.pipeline_latency_s == {"cam": 0.8}
    commands = _client(server)
    assert remote_action(commands, "capture")("cam") == (False, "the counter finds a person in view")
    assert server.calls == ["cam"]  # the pipeline's own capture ran, and its refusal came back
    assert remote_action(commands, "undo")("cam") == (True, "background in use")


def test_a_stale_mirror_hands_over_to_the_store(server):
    mirror = LiveMirror(_client(server), every_s=0.01)
    mirror.refresh(lambda: None)
    mirror._at -= 10.0  # as if the counting process had stopped answering 10 s ago
    assert mirror.latest_rows("zone_readings") is None and mirror.runtime_stats() == RuntimeStats()


def test_stream_caps_are_one_for_all_workers_and_a_gone_worker_frees_its_streams(server):
    first, second = RemoteCaps(_client(server)), RemoteCaps(_client(server))
    first.admit("kiosk", "10.0.0.1", False)
    second.admit("kiosk", "10.0.0.2", False)  # the same viewer token through another worker
    with pytest.raises(StreamRefused) as exc:  # 2 of its 3 (one reserved), counted over both workers
        second.admit("kiosk", "10.0.0.3", False)
    assert exc.value.status == 429 and "this token" in exc.value.detail and " 2 " in exc.value.detail
    for i in range(4):
        (first if i % 2 else second).admit(f"wall-{i}", f"10.1.0.{i}", False)
    with pytest.raises(StreamRefused) as exc:  # viewers hold 6 of the pool's 8; 2 are the operators'
        first.admit("tv", "10.2.0.1", False)
    assert exc.value.status == 503
    second.admit("control-room", "10.3.0.1", True)
    first.client.close()  # the first worker stops (or crashes): its 3 streams go back to the pool
    deadline = time.monotonic() + 5
    while len(server.caps) > 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.caps) == 4
    second.admit("tv", "10.2.0.1", False)


def test_a_released_stream_is_usable_again(server):
    caps = RemoteCaps(_client(server))
    leases = [caps.admit("kiosk", "10.0.0.1", False) for _ in range(2)]
    with pytest.raises(StreamRefused):
        caps.admit("kiosk", "10.0.0.1", False)
    caps.release(leases[0])  # from the stream's end, without waiting on the channel
    deadline = time.monotonic() + 5
    while len(server.caps) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    caps.admit("kiosk", "10.0.0.1", False)


def test_a_site_reload_in_one_worker_reaches_the_others(server):
    reloaded: list[str] = []
    one, other = LiveMirror(_client(server)), LiveMirror(_client(server))
    one.refresh(lambda: reloaded.append("one"))
    other.refresh(lambda: reloaded.append("other"))
    assert reloaded == []  # the first look sets the generation; nothing to re-read
    one.announce_reload()
    one.refresh(lambda: reloaded.append("one"))
    other.refresh(lambda: reloaded.append("other"))
    assert reloaded == ["other"]  # the worker that reloaded does not read the file twice


def test_the_channel_is_a_private_unix_socket_that_wants_the_secret(server):
    folder = Path(server.address()["path"]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # no other user can reach the socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(server.address()["path"])
        sock.sendall(json.dumps({"secret": "guess"}).encode() + b"\n")
        sock.sendall(json.dumps({"op": "snapshot"}).encode() + b"\n")
        assert sock.recv(1024) == b""  # closed without an answer
    server.stop()
    assert not folder.exists()
