"""Kubernetes resource quantities: memory ("512Mi", "2Gi", "1G") in bytes, CPU ("500m", "1") in cores.

Used by the service spec's ``resources`` (`harness.config.Resources`), which the local platform
enforces with cgroups and the Kubernetes renderer writes into the manifests.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_memory_bytes", "parse_cpu_cores"]


_MEMORY_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_memory_bytes(value: str | int | float) -> int:
    """Return a Kubernetes memory quantity ("512Mi", "2Gi", "1G", 1048576) in bytes; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a memory quantity such as '512Mi'")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise ValueError("expected a memory quantity such as '512Mi' or '2Gi'")
        number, unit = float(match.group(1)), match.group(2)
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"unknown memory unit {unit!r} (use Ki, Mi, Gi, Ti, k, M, G, T)")
    size = int(number * _MEMORY_UNITS[unit])
    if size <= 0:
        raise ValueError("must be greater than zero")
    return size


def parse_cpu_cores(value: str | int | float) -> float:
    """Return a Kubernetes CPU quantity ("500m", "1", 0.5) in cores; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a CPU quantity such as '500m' or '1'")
    text = str(value).strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ValueError("expected a CPU quantity such as '500m' or '1'") from None
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError("must be greater than zero")
    return cores
