"""The environment fingerprint: what a run measured on, saved in every run record.

`fingerprint()` returns a JSON-ready nested dict::

    {"cpu": {"model", "logical_cores", "physical_cores", "available_cores", "precision_flags"},
     "memory": {"total_mb"},
     "os": {"system", "kernel", "distribution", "machine", "hostname"},
     "python": {"version", "implementation"},
     "torch": {"version" ("absent" when not installed), "cuda_runtime", "cudnn", "cuda_available",
               "num_threads", "float32_matmul_precision", "cuda_matmul_allow_tf32", "cudnn_allow_tf32"},
     "gpu": {"present": false, "reason"} | {"present": true, "driver_version", "cuda_driver_version",
             "count", "devices": [{"index", "name", "uuid", "memory_total_mb"}]},
     "harness": {"version", "git_commit", "git_dirty"},
     "cgroup": {"version": "v1"|"v2"|"none", "memory_writable", "cpu_writable"},
     "collected_s"}

Without the torch import it takes well under a second; the torch part is computed once per process
(importing torch costs seconds). `fingerprint_differences(a, b)` names what differs in ways that
matter when two runs' performance is compared; `flatten_fingerprint` gives dotted keys for tables.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import psutil

from harness import __version__
from harness.gpu import GpuError, query_gpus

__all__ = [
    "TORCH_ABSENT",
    "COMPARED_FIELDS",
    "fingerprint",
    "torch_info",
    "cpu_info",
    "cgroup_info",
    "git_info",
    "flatten_fingerprint",
    "fingerprint_differences",
]

TORCH_ABSENT = "absent"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# CPU features that decide how fast reduced precision runs (bf16/fp16 without them is emulated).
_PRECISION_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                    "amx_bf16", "amx_tile", "amx_int8")

# Dotted fields whose difference makes a performance comparison suspect. Git commit, hostname and
# harness version are left out on purpose: comparing two builds on one machine is the normal case.
COMPARED_FIELDS = (
    "cpu.model", "cpu.logical_cores", "cpu.physical_cores", "cpu.available_cores", "cpu.precision_flags",
    "memory.total_mb",
    "python.version",
    "torch.version", "torch.cuda_runtime", "torch.cudnn", "torch.cuda_available", "torch.num_threads",
    "torch.float32_matmul_precision", "torch.cuda_matmul_allow_tf32", "torch.cudnn_allow_tf32",
    "gpu.present", "gpu.count", "gpu.driver_version", "gpu.cuda_driver_version", "gpu.devices",
)
_MEMORY_TOLERANCE = 0.05  # total RAM reported by the kernel wobbles by a few MiB between boots


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """Return the CPU model, core counts (logical, physical, usable by this process) and precision flags."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and model is None:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass  # not Linux: fall back to what the platform module knows
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine() or None,
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "available_cores": available,
        "precision_flags": [f for f in _PRECISION_FLAGS if f in flags],
    }


@functools.lru_cache(maxsize=1)
def torch_info() -> dict[str, Any]:
    """Return torch's version, CUDA runtime, cuDNN and precision settings; version "absent" without torch.

    Imports torch (seconds) on the first call only; the answer is cached for the process.
    """
    try:
        import torch
    except ImportError as exc:
        return {"version": TORCH_ABSENT, "reason": str(exc)}
    except Exception as exc:  # a broken CUDA install can raise OSError etc. on import; report, don't crash
        return {"version": TORCH_ABSENT, "reason": f"torch failed to import: {type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {
        "version": str(torch.__version__),
        "cuda_runtime": torch.version.cuda,  # None for a CPU build
        "cudnn": None,
        "cuda_available": False,
        "num_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }
    try:
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["cuda_available"] = bool(torch.cuda.is_available())
    except Exception as exc:  # CUDA init failures (driver mismatch) are facts about the machine
        info["cuda_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _torch_version_without_import() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return TORCH_ABSENT


def _writable(path: Path) -> bool:
    # access(2) also answers EROFS for a read-only mount, which is how containers usually expose cgroups
    return path.is_dir() and os.access(path, os.W_OK)


def cgroup_info(root: Path = CGROUP_ROOT) -> dict[str, Any]:
    """Return the cgroup version in use ("v1", "v2" or "none") and whether memory/cpu can be written."""
    if (root / "cgroup.controllers").is_file():
        try:
            controllers = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            controllers = set()
        writable = _writable(root)
        return {
            "version": "v2",
            "memory_writable": writable and "memory" in controllers,
            "cpu_writable": writable and "cpu" in controllers,
        }
    if (root / "memory").is_dir() or (root / "cpu").is_dir():
        return {
            "version": "v1",
            "memory_writable": _writable(root / "memory"),
            "cpu_writable": _writable(root / "cpu"),
        }
    return {"version": "none", "memory_writable": False, "cpu_writable": False}


def _package_root() -> Path:
    return Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """Return the harness checkout's commit and dirty flag; both None when not run from a git checkout."""
    root = _package_root()
    none = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        # a blocking run, not the harness's spawner (harness.processes): git answers in
        # milliseconds and is bounded by the timeout, so a harness killed meanwhile leaves it for no longer
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # An installed copy under some other repository's tree (a venv inside a project) is not a checkout.
    if top is None or Path(top).resolve() != root:
        return none
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def _os_info() -> dict[str, Any]:
    distribution = None
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                distribution = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "system": platform.system(),
        "kernel": platform.release(),
        "distribution": distribution,
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
    }


def _gpu_info() -> dict[str, Any]:
    try:
        return query_gpus().to_dict()
    except GpuError as exc:  # a GPU that is there but failing is a fact to record, not a crash
        return {"present": False, "reason": str(exc)}


def fingerprint(*, inspect_torch: bool = True) -> dict[str, Any]:
    """Return the environment fingerprint (see the module docstring); never raises for absent parts.

    With ``inspect_torch=False`` torch is not imported: only its installed version is reported.
    """
    if inspect_torch or "torch" in sys.modules:
        torch_part = torch_info()
    else:
        torch_part = {"version": _torch_version_without_import(), "inspected": False}
    return {
        "cpu": cpu_info(),
        "memory": {"total_mb": round(psutil.virtual_memory().total / 2**20, 1)},
        "os": _os_info(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "torch": dict(torch_part),
        "gpu": _gpu_info(),
        "harness": {"version": __version__, **git_info()},
        "cgroup": cgroup_info(),
        "collected_s": time.time(),
    }


def flatten_fingerprint(fp: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``fp`` with nested dicts flattened to dotted keys (lists are kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in fp.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_fingerprint(value, prefix=name + "."))
        else:
            flat[name] = value
    return flat


def _same(field: str, a: Any, b: Any) -> bool:
    if field == "memory.total_mb" and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= _MEMORY_TOLERANCE * max(a, b)
    if field == "python.version" and isinstance(a, str) and isinstance(b, str):
        return a.split(".")[:2] == b.split(".")[:2]  # patch releases do not move benchmarks
    if field == "gpu.devices" and isinstance(a, list) and isinstance(b, list):
        # which boards, not their serial numbers
        strip = lambda ds: [(d.get("name"), d.get("memory_total_mb")) for d in ds if isinstance(d, Mapping)]
        return strip(a) == strip(b)
    return a == b


def _show(field: str, value: Any) -> str:
    if field == "gpu.devices" and isinstance(value, list):
        return repr([f"{d.get('name')} {d.get('memory_total_mb')} MiB" for d in value if isinstance(d, Mapping)])
    return repr(value)


def fingerprint_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[str]:
    """Return one line per performance-relevant field that differs, "field: a -> b"; [] when comparable.

    Fields missing on both sides are skipped; missing on one side counts as a difference.
    """
    flat_a, flat_b = flatten_fingerprint(a or {}), flatten_fingerprint(b or {})
    # a fingerprint taken without importing torch knows only torch's version
    torch_details_known = flat_a.get("torch.inspected", True) and flat_b.get("torch.inspected", True)
    lines = []
    for field in COMPARED_FIELDS:
        if field not in flat_a and field not in flat_b:
            continue
        if field.startswith("torch.") and field != "torch.version" and not torch_details_known:
            continue
        va, vb = flat_a.get(field), flat_b.get(field)
        if not _same(field, va, vb):
            lines.append(f"{field}: {_show(field, va)} -> {_show(field, vb)}")
    return lines
