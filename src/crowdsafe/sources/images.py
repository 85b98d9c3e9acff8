"""Still images: one file, or a folder of them in the order a person would sort them.

Decoders are forgiving in a way that hurts counting: libjpeg fills a truncated JPEG with
grey and returns it as if nothing happened, and a half-grey image gets a plausible but wrong
count. So JPEGs are checked for their end-of-image marker before decoding, and anything
OpenCV cannot decode is an error for a single file and a skipped entry in a folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from crowdsafe.sources.frames import Frame, SkipLog, SkippedFrame, SourceError

IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
    ".pbm", ".pnm", ".jp2", ".avif", ".gif",
})
_SOI = b"\xff\xd8"


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key putting ``img2`` before ``img10``, as file managers and people do."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG ends before its end-of-image marker.

    Walks the marker segments and the entropy-coded scans rather than looking at the last
    two bytes, because cameras often append trailers after the image and embedded EXIF
    thumbnails carry their own end marker. Anything structurally odd returns False and is
    left to the decoder: this check must never reject a file libjpeg reads completely.
    """
    n, i = len(data), 2
    while i < n:
        if data[i] != 0xFF:
            return False
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            return True
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if i + 2 > n:
            return True
        i += int.from_bytes(data[i:i + 2], "big")
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data: 0xFF00 is a stuffed byte, 0xFFD0-D7 a restart
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return True
            following = data[j + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                i = j + (1 if following == 0xFF else 2)
                continue
            i = j
            break
    return True


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 image from ``path``, or SourceError saying why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise SourceError(f"{path}: file is empty (0 bytes)")
    if data.startswith(_SOI) and jpeg_is_truncated(data):
        raise SourceError(f"{path}: truncated JPEG (the file ends before the image does)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: not an image OpenCV can decode (corrupt or unsupported)")
    return image


def is_image_file(path: Path) -> bool:
    """Judged by content where OpenCV can tell, so a JPEG named ``.dat`` still counts."""
    return path.suffix.lower() in IMAGE_SUFFIXES or cv2.haveImageReader(str(path))


class ImageFileSource:
    """A single image; any problem with it is an error, since there is nothing else to count."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.skipped = SkipLog(maxlen=None)  # a file ends: the report lists every skip

    @property
    def expected(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(self.name, 0, None, read_image(self.path))


class FolderSource:
    """Image files directly inside a folder, natural order; unreadable ones are skipped.

    Files that do not look like images (labels, READMEs) are ignored silently: a dataset
    folder is a normal thing to point at. Sub-folders are not entered.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.skipped = SkipLog(maxlen=None)  # a file ends: the report lists every skip
        try:
            entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        except OSError as exc:
            raise SourceError(f"{path}: cannot list folder ({exc.strerror or exc})") from None
        self.files = sorted((p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda p: natural_key(p.name))
        if not self.files:
            raise SourceError(f"{path}: no image files in this folder (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES))})")

    @property
    def expected(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            try:
                image = read_image(file)
            except SourceError as exc:
                reason = str(exc).removeprefix(f"{file}: ")
                self.skipped.append(SkippedFrame(file.name, index, reason))
                continue
            yield Frame(file.name, index, None, image)
