"""``crowdsafe label``: click the heads on a few frames of one camera, for ``crowdsafe tune``.

Commissioning needs head points on frames of the camera's own source, and nothing else in
crowdsafe makes them. This serves one page on 127.0.0.1 only, behind a token made for this run
(every request without it gets 403, and a Host other than the loopback one too, so a web page in
the same browser cannot reach it by DNS rebinding). The frames are decoded and kept in memory as
JPEG bytes for this page only: never written to disk, never sent anywhere else, dropped when the
command ends. Each frame is pre-filled with the counter's proposal (``counting.proposals``) so
a person mostly confirms and corrects; what is written is points only, in the format ``tune``
and ``eval-site`` read.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import secrets
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import typer

from crowdsafe.cli import options as opt
from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, fail, user_errors
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.proposals import head_proposals
from crowdsafe.counting.tuning import CameraTuning
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.evaluation.site import load_frame_points
from crowdsafe.measure.background import encode_jpeg
from crowdsafe.runtime.plan import read_tunings

#: A labels body is a few numbers per head per frame; anything bigger is not one.
MAX_BODY_BYTES = 2_000_000
MAX_POINTS_PER_FRAME = 5000
MAX_FRAMES = 2000


def frame_range(text: str) -> range:
    """``START:STOP[:STEP]`` (STOP exclusive), all three explicit enough to know what to decode."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--frames {text!r}: expected START:STOP[:STEP], e.g. 0:200:10")
    try:
        start, stop = int(parts[0] or 0), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 and parts[2] else 1
    except ValueError:
        raise ValueError(f"--frames {text!r}: START, STOP and STEP must be whole numbers") from None
    if step < 1 or start < 0 or stop <= start:
        raise ValueError(f"--frames {text!r}: need 0 <= START < STOP and STEP >= 1")
    span = range(start, stop, step)
    if len(span) > MAX_FRAMES:
        raise ValueError(f"--frames {text!r}: {len(span)} frames; label at most {MAX_FRAMES} at once")
    return span


@dataclass
class LabelFrame:
    index: int
    jpeg: bytes
    proposal: list[list[float]]
    points: list[list[float]] | None = None  # saved labels, when the out file had this frame


@dataclass
class LabelSession:
    """The frames in memory, the token and what has been saved; shared by the request threads."""

    camera: str
    span: range
    out: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    frames: dict[int, LabelFrame] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    done_loading: bool = False
    error: str | None = None
    saved: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self) -> dict[str, Any]:
        with self.lock:
            frames = [{"index": f.index, "proposal": f.proposal, "points": f.points}
                      for f in sorted(self.frames.values(), key=lambda f: f.index)]
        return {"camera": self.camera, "frames": frames, "wanted": list(self.span),
                "width": self.size[0], "height": self.size[1], "loading": not self.done_loading,
                "error": self.error, "out": str(self.out), "saved": self.saved}

    def save(self, body: Any) -> int:
        """Validate ``{"frames": {"<index>": [[x, y], ...]}}`` and write it (all or nothing)."""
        if not isinstance(body, dict) or not isinstance(body.get("frames"), dict):
            raise ValueError("frames: expected an object {\"<frame index>\": [[x, y], ...]}")
        out: dict[str, dict[str, Any]] = {}
        width, height = self.size
        for key, pts in body["frames"].items():
            if not isinstance(key, str) or not key.isdigit() or int(key) not in self.frames:
                raise ValueError(f"frames.{str(key)[:40]}: not one of the frames being labelled")
            if not isinstance(pts, list) or len(pts) > MAX_POINTS_PER_FRAME:
                raise ValueError(f"frames.{key}: expected a list of at most {MAX_POINTS_PER_FRAME} [x, y]")
            clean = []
            for i, p in enumerate(pts):
                if (not isinstance(p, list) or len(p) != 2
                        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
                        or not all(math.isfinite(v) for v in p)
                        or not (0 <= p[0] <= width and 0 <= p[1] <= height)):
                    raise ValueError(f"frames.{key}[{i}]: expected [x, y] inside the {width}x{height} image")
                clean.append([round(float(p[0]), 2), round(float(p[1]), 2)])
            out[str(int(key))] = {"count": len(clean), "points": clean}
        if not out:
            raise ValueError("frames: no frame to save")
        with self.lock:
            merged = self.previous()
            merged.update(out)
            ordered = {k: merged[k] for k in sorted(merged, key=int)}
            tmp = self.out.with_name(self.out.name + ".tmp")
            tmp.write_text(json.dumps(ordered, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.out)
            for key, entry in out.items():
                self.frames[int(key)].points = entry["points"]
            self.saved = len(out)
        return len(out)

    def previous(self) -> dict[str, Any]:
        """What the out file already holds (frames outside this range are kept as they were)."""
        if not self.out.is_file():
            return {}
        try:
            data = json.loads(self.out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def load_frames(session: LabelSession, video: str, counter: Counts, counted_size: tuple[int, int],
                tuning: CameraTuning | None, earlier: dict[int, np.ndarray]) -> None:
    """Decode the wanted frames in order, keep each as JPEG bytes in memory with its proposal."""
    cap = cv2.VideoCapture(video)
    try:
        if not cap.isOpened():
            raise DatasetError(f"{video}: cannot open the camera's source")
        wanted, index = set(session.span), -1
        last = session.span[-1]
        while index < last:
            ok, image = cap.read()
            index += 1
            if not ok:
                if not session.frames:
                    raise DatasetError(f"{video}: no frame of {session.span.start}:{session.span.stop} "
                                       "could be read")
                break
            if index not in wanted:
                continue
            height, width = image.shape[:2]
            session.size = (width, height)
            small = image if (width, height) == counted_size else cv2.resize(
                image, counted_size, interpolation=cv2.INTER_AREA)
            result = counter.count(small)
            density = tuning.apply(result.density) if tuning is not None else result.density
            scale = (width / counted_size[0], height / counted_size[1])
            pts = head_proposals(density, result.cell, scale=scale)
            frame = LabelFrame(index, encode_jpeg(image, quality=90),
                               [[round(float(x), 2), round(float(y), 2)] for x, y in pts])
            if index in earlier:
                frame.points = [[float(x), float(y)] for x, y in earlier[index]]
            del image, small  # only the JPEG bytes stay, in memory
            with session.lock:
                session.frames[index] = frame
    except Exception as exc:  # shown on the page and printed; the command still ends cleanly
        session.error = str(exc)
    finally:
        cap.release()
        session.done_loading = True


def page_html() -> bytes:
    return (resources.files("crowdsafe") / "dashboard" / "label.html").read_bytes()


def make_handler(session: LabelSession, port_of: list[int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "crowdsafe-label"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return  # the URL carries the token: never log it

        def send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                             "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, data: Any) -> None:
            self.send(status, json.dumps(data).encode(), "application/json")

        def allowed(self) -> bool:
            host = self.headers.get("Host", "")
            if host not in (f"127.0.0.1:{port_of[0]}", f"localhost:{port_of[0]}"):
                return False
            query = parse_qs(urlsplit(self.path).query)
            given = self.headers.get("X-Label-Token") or (query.get("token") or [""])[0]
            return hmac.compare_digest(given.encode(), session.token.encode())

        def do_GET(self) -> None:
            if not self.allowed():
                return self.send_json(403, {"detail": "token: missing or wrong (use the URL label printed)"})
            path = urlsplit(self.path).path
            if path == "/":
                return self.send(200, page_html(), "text/html; charset=utf-8")
            if path == "/api/state":
                return self.send_json(200, session.state())
            if path.startswith("/api/frame/") and path.endswith(".jpg"):
                key = path.removeprefix("/api/frame/").removesuffix(".jpg")
                frame = session.frames.get(int(key)) if key.isdigit() else None
                if frame is None:
                    return self.send_json(404, {"detail": f"frame {key[:20]}: not loaded"})
                return self.send(200, frame.jpeg, "image/jpeg")
            return self.send_json(404, {"detail": "not found"})

        def do_POST(self) -> None:
            if not self.allowed():
                return self.send_json(403, {"detail": "token: missing or wrong (use the URL label printed)"})
            path = urlsplit(self.path).path
            if path not in ("/api/labels", "/api/finish"):
                return self.send_json(404, {"detail": "not found"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                return self.send_json(413 if length > 0 else 400,
                                      {"detail": f"body: at most {MAX_BODY_BYTES} bytes"})
            raw = self.rfile.read(length) if length else b""
            if path == "/api/finish":
                self.send_json(200, {"finished": True, "saved": session.saved})
                session.finished.set()
                return None
            try:
                body = json.loads(raw or b"null")
                saved = session.save(body)
            except RecursionError:
                return self.send_json(422, {"detail": "frames: nested too deeply"})
            except (ValueError, UnicodeDecodeError) as exc:
                return self.send_json(422, {"detail": str(exc)})
            except OSError as exc:
                return self.send_json(500, {"detail": f"{session.out}: cannot write ({exc.strerror or exc})"})
            return self.send_json(200, {"saved": saved, "out": str(session.out)})

    return Handler


def counter_for(ctx: typer.Context, site: Any, camera: str, spec: Any) -> tuple[Counts, CameraTuning | None]:
    """The camera's own tuned model and setting where it has one (better proposals), else its model."""
    tuning = read_tunings(site).get(camera)  # the one reader of tuning files (runtime.plan)
    cam = site.camera(camera)
    model = tuning.model if tuning is not None else (cam.model if cam.model in ("dense", "sparse")
                                                     else "sparse")
    return opt.counter_factory(ctx)(replace(spec, model=model)), tuning


def label(
    ctx: typer.Context,
    site_file: opt.SiteFileArg,
    camera: opt.VideoCameraOption,
    frames: Annotated[str, typer.Option(
        help="START:STOP[:STEP] frame indices of the camera's source to label (STOP exclusive).",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Labels file to write, head points per frame (the crowd sets' point format "
             "that `crowdsafe tune --labels` reads). Frames it already holds are shown as saved.",
        dir_okay=False)] = Path("labels.json"),
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="Port on 127.0.0.1 (0: any free one).")] = 0,
    tune_out: Annotated[Path | None, typer.Option(
        "--tune", help="When the page says Finish, run `crowdsafe tune` on the labels and write the "
                       "tuning here.", dir_okay=False, show_default=False)] = None,
    engine: opt.EngineOption = opt.EngineChoice.auto,
    precision: Annotated[opt.PrecisionChoice, typer.Option(
        help="Precision of the proposals' counter: int8 by default, since a person corrects every "
             "proposal and int8 is several times faster on a CPU.")] = opt.PrecisionChoice.int8,
    threads: opt.ThreadsOption = None,
) -> None:
    """Label heads on frames of one camera in a local page, for `crowdsafe tune`."""
    check_out_folder("--out", out)
    check_out_folder("--tune", tune_out)
    from crowdsafe.cli.site import site_geometry
    from crowdsafe.config.site import load_site

    with user_errors():
        span = frame_range(frames)
        site = load_site(site_file)
        geometry = site_geometry(site)
        if camera not in geometry.cameras:
            raise fail(f"--camera {camera!r}: the site has {', '.join(geometry.cameras)}")
        earlier = load_frame_points(out) if out.is_file() else {}
        video = site.resolve_source(site.camera(camera))
        counter, tuning = counter_for(ctx, site, camera, opt.engine_spec(engine, precision, threads))
    session = LabelSession(camera=camera, span=span, out=out)
    counted_size = geometry.cameras[camera].ground_map.image_size
    port_of = [port]
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(session, port_of))
    except OSError as exc:
        raise fail(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})") from None
    server.daemon_threads = True
    port_of[0] = server.server_address[1]
    console = stdout_console()
    url = f"http://127.0.0.1:{port_of[0]}/?token={session.token}"
    console.print(f"labelling {len(span)} frames of camera {camera}; open {url}", highlight=False,
                  soft_wrap=True)
    console.print("(frames stay in this process's memory; Finish on the page ends it, Ctrl-C too)",
                  highlight=False)
    loader = threading.Thread(target=load_frames, daemon=True,
                              args=(session, video, counter, counted_size, tuning, earlier))
    loader.start()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        session.finished.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        session.frames.clear()
    if session.error:
        raise fail(session.error)
    if not out.is_file():
        console.print("nothing saved", highlight=False)
        return
    console.print(f"labels written to {out}", highlight=False)
    if tune_out is not None:
        from crowdsafe.cli.tune import tune

        ctx.invoke(tune, ctx, site_file=site_file, camera=camera, labels=out, frames=frames, out=tune_out,
                   max_frames=40, interval_frames=0, keep_frames=None, folds=5, level=0.9, engine=engine,
                   precision=None, threads=threads)
