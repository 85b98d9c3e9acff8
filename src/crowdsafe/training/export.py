"""Byte-reproducible ``.npz`` files: the shipped layers are pinned by SHA-256.

``np.savez`` stamps each member with the current time, so saving the same arrays twice
gives different bytes and a different hash. Members here carry a fixed timestamp and are
stored uncompressed (fp16 weights barely compress), so the same arrays give the same file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())
