"""What the numbers were measured on: CPU model, cores, the SIMD features that decide int8/bf16
speed (VNNI, AVX-512, AMX), library versions and the load at start (other jobs skew timings)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from crowdsafe.counting.engines import cpu_flags

#: Flags that change which kernels the engines can use.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                  "amx_bf16", "amx_int8")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, object]:
    flags = cpu_flags()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "flags": {f: f in flags for f in RELEVANT_FLAGS},
        "python": platform.python_version(),
        "openvino": _version("openvino"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "load_avg_1m_at_start": round(load[0], 2) if load else None,
    }


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory now (VmRSS, not the peak), in MB; NaN when the process is gone or not Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")
