"""Shared fixtures: real dev data, one fp32 counter per session, small real test media."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsafe.counting.counter import DensityCounter
from crowdsafe.counting.engines import EngineSpec, EngineUnavailable, create_engine
from crowdsafe.counting.weights import WeightsError
from tests.support.media import CORRUPT_FRAMES, VIDEO_FPS

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = Path(os.environ.get("CROWDSAFE_SHARED_DATA", DEFAULT_SHARED_DATA))
    if not (root / "crowd").is_dir():
        pytest.skip(f"shared dev data not found at {root}/crowd "
                    "(set CROWDSAFE_SHARED_DATA to the folder holding crowd/)")
    return root


@pytest.fixture(scope="session")
def crowd_data(shared_data: Path) -> Path:
    return shared_data / "crowd"


@pytest.fixture(scope="session")
def mall_jpeg(crowd_data: Path) -> Path:
    """A real 640x480 CCTV frame (Mall dataset)."""
    return crowd_data / "mall" / "seq_000801.jpg"


@pytest.fixture(scope="session")
def counter() -> DensityCounter:
    """The fp32 counter, built once: engine start-up costs seconds on 2 cores."""
    try:
        return DensityCounter(create_engine(EngineSpec(precision="fp32")))
    except (WeightsError, EngineUnavailable) as exc:
        pytest.skip(f"counting model unavailable ({exc}); run `crowdsafe models fetch`")


@pytest.fixture
def shared_counter(counter: DensityCounter) -> DensityCounter:
    """The session counter, for CLI commands given it as ``obj=uses(counter)`` instead of an engine."""
    return counter


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def crop_jpeg(media_dir: Path, mall_jpeg: Path) -> Path:
    """A 256x256 crop of a real frame: real content, fast to count."""
    path = media_dir / "crop.jpg"
    cv2.imwrite(str(path), cv2.imread(str(mall_jpeg))[112:368, 192:448])
    return path


@pytest.fixture(scope="session")
def truncated_jpeg(media_dir: Path, mall_jpeg: Path) -> Path:
    """The first half of a real JPEG: libjpeg would still decode it, half grey."""
    path = media_dir / "truncated.jpg"
    data = mall_jpeg.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def bundled_video() -> Path:
    return Path(str(resources.files("crowdsafe") / "data" / "vtest.avi"))


@pytest.fixture(scope="session")
def corrupt_video(media_dir: Path, bundled_video: Path) -> Path:
    """12 real frames (vtest, 256x192) as MJPG AVI, with frames 4 and 5 destroyed.

    The garbage goes over each frame's JPEG header (found by its SOI marker), so the
    decoder fails on exactly those frames while the AVI index stays intact.
    """
    cap = cv2.VideoCapture(str(bundled_video))
    path = media_dir / "corrupt.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (256, 192))
    for _ in range(12):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (256, 192), interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 12, "expected one JPEG per frame in the MJPG stream"
    rng = np.random.default_rng(7)
    for k in CORRUPT_FRAMES:
        data[starts[k]:starts[k] + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def fast_counter() -> DensityCounter:
    """int8 when its plan ships (faster on 2 cores), else fp32; built once for the session, for
    tests that need real inference but not full precision (fault and privacy runs)."""
    for precision in ("int8", "fp32"):
        try:
            return DensityCounter(create_engine(EngineSpec(precision=precision)))
        except EngineUnavailable:
            continue
        except WeightsError as exc:
            pytest.skip(f"counting model unavailable ({exc}); run `crowdsafe models fetch`")
    pytest.skip("no engine available")
