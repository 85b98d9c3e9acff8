"""From a path the user typed to the right frame source, or one clear error.

Kept apart from the readers so that network streams (RTSP/HTTP URLs) can be added here as
one more branch without touching file handling.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from crowdsafe.sources.frames import Frame, FrameSource, SourceError
from crowdsafe.sources.images import FolderSource, ImageFileSource, is_image_file
from crowdsafe.sources.stream import FiniteStream, is_stream_url, redact
from crowdsafe.sources.video import VIDEO_SUFFIXES, VideoSource


def open_source(path: str | Path, every: float | None = None, *, stream_frames: int = 10) -> FrameSource:
    """The source for ``path``; ``every`` (seconds) only applies to videos and streams.

    A stream URL (rtsp://, http://, ...) is read for ``stream_frames`` frames; it must arrive
    here as the text typed, since ``Path`` would fold its ``//`` into a file name. Video is
    decided by file extension, not by asking FFmpeg, because FFmpeg happily "opens" JPEGs and
    some text files as one-frame videos.
    """
    if isinstance(path, str) and is_stream_url(path):
        return FiniteStream(path, every, limit=stream_frames, name=redact(path))
    if "://" in str(path):
        raise SourceError(f"{redact(str(path))}: not a file, and not a stream URL crowdsafe reads "
                          "(rtsp://, rtsps://, http://, https://, rtmp://, udp://, tcp://)")
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path, every)
    if is_image_file(path):
        return ImageFileSource(path)
    raise SourceError(f"{path}: not an image or a video file")


def frames(path: str | Path, every: float | None = None) -> Iterator[Frame]:
    """Frames of ``path`` in order; use :func:`open_source` to see what was skipped."""
    yield from open_source(path, every)
