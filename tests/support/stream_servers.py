"""Real stream servers on 127.0.0.1 for tests: HTTP MJPEG (in-process) and RTSP (GStreamer).

Both serve the bundled sample video, looped, and can be killed and restarted on the same port
to test reconnects.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import cv2

VIDEO = Path(str(resources.files("crowdsafe") / "data" / "vtest.avi"))
BOUNDARY = "crowdsafeframe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg_frames(limit: int = 120, scale: float = 0.5) -> list[bytes]:
    cap = cv2.VideoCapture(str(VIDEO))
    out = []
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    cap.release()
    return out


class MjpegServer:
    """multipart/x-mixed-replace JPEG stream at ``fps``; ``stop()`` drops every client at once."""

    def __init__(self, port: int | None = None, fps: float = 20.0, stall_after: int | None = None) -> None:
        self.port = port or free_port()
        self.fps = fps
        self.stall_after = stall_after
        self.frames = _jpeg_frames()
        self._server: ThreadingHTTPServer | None = None
        self._alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while owner._alive.is_set():
                        if owner.stall_after is not None and i >= owner.stall_after:
                            time.sleep(0.1)  # connection open, no data: a stalled camera
                            continue
                        jpg = owner.frames[i % len(owner.frames)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self._alive.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._alive.clear()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


RTSP_SCRIPT = r"""
import sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib
Gst.init(None)
port, video = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer(); server.set_address("127.0.0.1"); server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f'( filesrc location={video} ! avidemux ! avdec_msmpeg4 ! videoconvert ! '
                   'videoscale ! video/x-raw,width=384,height=288 ! jpegenc quality=80 ! '
                   'rtpjpegpay name=pay0 pt=26 )')
factory.set_shared(True)
server.get_mount_points().add_factory("/live", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
"""


def rtsp_available() -> str | None:
    """None when a GStreamer RTSP server can run here, else why not."""
    py = shutil.which("python3", path="/usr/bin")
    if py is None:
        return "system python3 not found"
    probe = subprocess.run([py, "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
                            "from gi.repository import GstRtspServer"], capture_output=True)
    if probe.returncode != 0:
        return ("GStreamer RTSP server not installed (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-libav)")
    return None


class RtspServer:
    """GStreamer's RTSP server in a child process (system Python with PyGObject)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> RtspServer:
        self._proc = subprocess.Popen(["/usr/bin/python3", "-c", RTSP_SCRIPT, str(self.port), str(VIDEO)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("RTSP server did not start")
        return self

    def kill(self) -> None:
        if self._proc:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    stop = kill


if __name__ == "__main__":  # manual check: python -m tests.support.stream_servers
    srv = MjpegServer().start()
    print(srv.url)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 30)
