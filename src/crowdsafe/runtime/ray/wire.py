"""How a sampled frame crosses between Ray workers: raw, JPEG or PNG.

On one machine Ray hands NumPy arrays through shared memory, so ``raw`` costs nothing. Between
machines every byte is network: a 768x576 BGR frame is 1.3 MB raw, about a tenth of that as
JPEG at quality 90. JPEG is lossy, so it changes counts a little (measured in docs/scaling.md);
PNG is lossless at roughly half of raw, and slow to encode. The pair frame (for optical flow)
travels only for cameras that measure a line, and frames are resized to the calibration size
before they leave the reader, never after.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from crowdsafe.runtime.camera import Sample

Encoding = Literal["raw", "jpeg", "png"]
ENCODINGS: tuple[Encoding, ...] = ("raw", "jpeg", "png")

Payload = bytes | np.ndarray


class WireError(ValueError):
    """A payload that cannot be decoded (truncated, wrong encoding)."""


@dataclass(frozen=True)
class WireSample:
    """A :class:`Sample` as it travels: images encoded, sizes known without decoding."""

    camera_id: str
    ts: float
    image: Payload
    pair: Payload | None
    pair_dt: float | None
    encoding: Encoding
    shape: tuple[int, int, int]  # (height, width, channels) of the decoded image
    frame_index: int | None = None

    @property
    def nbytes(self) -> int:
        """Pixel bytes on the wire (image and pair), the part that grows with resolution."""
        return _size(self.image) + (_size(self.pair) if self.pair is not None else 0)


def _size(payload: Payload) -> int:
    return payload.nbytes if isinstance(payload, np.ndarray) else len(payload)


def encode_image(image: np.ndarray, encoding: Encoding, quality: int = 90) -> Payload:
    if encoding == "raw":
        return np.ascontiguousarray(image)
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif encoding == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise WireError(f"unknown frame encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    if not ok:
        raise WireError(f"could not encode a {image.shape} frame as {encoding}")
    return buf.tobytes()


def decode_image(payload: Payload, encoding: Encoding) -> np.ndarray:
    if encoding == "raw":
        if not isinstance(payload, np.ndarray):
            raise WireError("raw frame payload is not an array")
        return payload
    if isinstance(payload, np.ndarray):
        raise WireError(f"{encoding} frame payload is an array, not bytes")
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise WireError(f"{encoding} frame payload of {len(payload)} bytes does not decode")
    return image


def encode_sample(sample: Sample, encoding: Encoding = "jpeg", *, quality: int = 90,
                  size: tuple[int, int] | None = None, keep_pair: bool = True) -> WireSample:
    """Resize to ``size`` (width, height) if the frame differs, drop the pair unless needed, encode."""
    image = _resized(sample.image, size)
    pair = _resized(sample.pair, size) if keep_pair and sample.pair is not None else None
    channels = int(image.shape[2]) if image.ndim == 3 else 1
    return WireSample(sample.camera_id, sample.ts, encode_image(image, encoding, quality),
                      None if pair is None else encode_image(pair, encoding, quality),
                      sample.pair_dt if pair is not None else None, encoding,
                      (int(image.shape[0]), int(image.shape[1]), channels),
                      getattr(sample, "frame_index", None))


def _resized(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)


def decode_sample(wire: WireSample) -> Sample:
    pair = None if wire.pair is None else decode_image(wire.pair, wire.encoding)
    sample = Sample(wire.camera_id, wire.ts, decode_image(wire.image, wire.encoding), pair, wire.pair_dt)
    if wire.frame_index is not None and hasattr(sample, "frame_index"):
        sample = dataclasses.replace(sample, frame_index=wire.frame_index)
    return sample


def node_id() -> str:
    """The Ray node this process runs on ("local" outside Ray); never imports or starts Ray."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "local"
    return str(ray.get_runtime_context().get_node_id())
