"""Facts about the test video that conftest builds, shared by conftest and the tests that check it.

They live here rather than in conftest so a test module never imports conftest (or another test
module): a test reads its expectations from ``tests.support``, the fixture builds the file from them.
"""

from __future__ import annotations

#: Frames of the test video whose JPEG headers are overwritten with garbage.
CORRUPT_FRAMES = (4, 5)
#: Frame rate the corrupt test video is written at.
VIDEO_FPS = 10.0
