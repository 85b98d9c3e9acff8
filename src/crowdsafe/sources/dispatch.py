"""From a path the user typed to the right frame source, or one clear error.

Kept apart from the readers so that network streams (RTSP/HTTP URLs) can be added here as
one more branch without touching file handling.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from crowdsafe.sources.frames import Frame, FrameSource, SourceError
from crowdsafe.sources.images import FolderSource, ImageFileSource, is_image_file
from crowdsafe.sources.video import VIDEO_SUFFIXES, VideoSource


def open_source(path: str | Path, every: float | None = None) -> FrameSource:
    """The source for ``path``; ``every`` (seconds) only applies to videos.

    Video is decided by file extension, not by asking FFmpeg, because FFmpeg happily
    "opens" JPEGs and some text files as one-frame videos.
    """
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
