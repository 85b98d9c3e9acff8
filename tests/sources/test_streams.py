"""Live sources against real servers on 127.0.0.1: sampling, kill/restart, stalls, dead URLs."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from crowdsafe.sources.stream import StreamSource, redact
from tests.support.stream_servers import MjpegServer, RtspServer, rtsp_available


class Consumer:
    """Runs a source in a thread, as the pipeline does, and records what came out."""

    def __init__(self, source: StreamSource) -> None:
        self.source = source
        self.frames: list[float] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for frame in self.source:
                assert frame.image.ndim == 3
                self.frames.append(frame.timestamp)
        except BaseException as exc:  # the test fails if the source ever raises
            self.error = exc

    def wait_frames(self, n: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.frames) < n:
            time.sleep(0.05)
        return len(self.frames) >= n

    def close(self) -> None:
        self.source.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "source did not stop"
        assert self.error is None, f"source raised {self.error!r}"


def fast_source(url: str, every: float | None = 0.25) -> StreamSource:
    return StreamSource(url, every=every, open_timeout_s=3, read_timeout_s=2, backoff_s=0.1, max_backoff_s=1)


def _kill_restart(server_cls) -> None:
    server = server_cls().start()
    consumer = Consumer(fast_source(server.url))
    try:
        assert consumer.wait_frames(4, 20)
        stamps = consumer.frames[:4]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 0.2, f"sampling every 0.25 s gave gaps {gaps}"
        server.stop()
        deadline = time.monotonic() + 10
        while consumer.source.health.status == "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumer.source.health.status == "reconnecting"
        before = len(consumer.frames)
        server = server_cls(port=server.port).start()
        assert consumer.wait_frames(before + 3, 30), "no frames after the server came back"
        health = consumer.source.health
        assert health.reconnects >= 1
        assert health.gaps and health.gaps[0].end is not None and health.gaps[0].end > health.gaps[0].start
        assert health.status == "up"
    finally:
        consumer.close()
        server.stop()


def test_mjpeg_kill_and_restart_reconnects_and_reports_gap():
    _kill_restart(MjpegServer)


@pytest.mark.skipif(rtsp_available() is not None, reason=str(rtsp_available()))
def test_rtsp_kill_and_restart_reconnects_and_reports_gap():
    _kill_restart(RtspServer)


def test_stalled_stream_is_detected_by_timeout():
    server = MjpegServer(stall_after=10).start()
    consumer = Consumer(fast_source(server.url, every=None))
    try:
        assert consumer.wait_frames(5, 15)
        deadline = time.monotonic() + 15
        while not consumer.source.health.gaps and time.monotonic() < deadline:
            time.sleep(0.1)
        assert consumer.source.health.gaps, "a stream that stopped sending must be noticed"
        assert "stalled" in consumer.source.health.gaps[0].reason
    finally:
        consumer.close()
        server.stop()


def test_dead_url_keeps_retrying_without_raising_and_stops_promptly():
    from tests.support.stream_servers import free_port

    consumer = Consumer(fast_source(f"http://user:secret@127.0.0.1:{free_port()}/none.mjpg"))
    time.sleep(2)
    health = consumer.source.health
    assert health.errors >= 2 and health.status == "connecting"
    assert "secret" not in health.last_error and "secret" not in consumer.source.name
    start = time.monotonic()
    consumer.close()
    assert time.monotonic() - start < 5
    assert consumer.frames == []


def test_redact_hides_credentials():
    assert redact("rtsp://admin:pw@10.0.0.5:554/s1") == "rtsp://***@10.0.0.5:554/s1"
    assert redact("rtsp://10.0.0.5/s1") == "rtsp://10.0.0.5/s1"
    # in the query too (issue 26: `crowdsafe count 'rtsp://host/stream?password=...'` printed it)
    assert redact("rtsp://host/stream?password=hunter2&channel=1") == "rtsp://host/stream?password=***&channel=1"
    assert redact("http://cam/x.mjpg?user=bob&pwd=pw&api_key=k&X-Amz-Signature=s&fps=5") == \
        "http://cam/x.mjpg?user=***&pwd=***&api_key=***&X-Amz-Signature=***&fps=5"
    assert redact("rtsp://[::1/s?password=pw") == "rtsp://***"  # unparsable: nothing after the scheme


def test_count_never_prints_a_stream_password():
    from typer.testing import CliRunner

    from crowdsafe.cli.main import app

    result = CliRunner().invoke(app, ["count", "rtsp://127.0.0.1:9/stream?password=hunter2",
                                      "--format", "json"])
    assert result.exit_code != 0 and "password=***" in result.output
    assert "hunter2" not in result.output
