"""Preflight: is this machine fit to run the harness and the model it serves?

Each ``check_*`` function returns a `Finding` (name, status, detail) and never raises; `run_preflight`
runs them all, `validate_preflight` raises `VerdictFailed` listing every failed check. Statuses:

- ``pass``: the requirement is met; ``warn``: it runs, but not as intended (recommended GPU memory
  not met, cgroups not writable so limits cannot be enforced, a GPU torch cannot use);
- ``absent``: no GPU stack here; a normal state on a CPU machine, not an error;
- ``fail``: a requirement is not met. GPU checks fail only when the run asks for a GPU
  (``require_gpu``); without one, a missing GPU is ``absent``.

GPU memory thresholds are in decimal GB (10**9 bytes), the unit GPU vendors print on the box, so a
"16 GB" board meets a 16 GB requirement; details show GiB too.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.environment import CGROUP_ROOT, TORCH_ABSENT, torch_info
from harness.errors import ConfigError, VerdictFailed
from harness.extras import DISTRIBUTION
from harness.gpu import GpuError, GpuInventory, query_gpus

__all__ = [
    "PASS", "WARN", "FAIL", "ABSENT", "STATUSES",
    "MIN_PYTHON",
    "Finding",
    "PreflightOptions",
    "check_python",
    "check_torch",
    "check_cuda_runtime",
    "check_cudnn",
    "check_nvidia_driver",
    "check_gpu_memory",
    "check_cgroups",
    "check_ports",
    "check_disk",
    "run_preflight",
    "failed_findings",
    "validate_preflight",
    "render_table",
    "findings_to_json",
]

PASS, WARN, FAIL, ABSENT = "pass", "warn", "fail", "absent"
STATUSES = (PASS, WARN, FAIL, ABSENT)
MIN_PYTHON = (3, 11)
_GB = 10**9
_MIB = 2**20


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: ``status`` is one of `STATUSES`; ``detail`` says what was found."""

    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form ``{"name", "status", "detail"}``."""
        return asdict(self)


@dataclass(frozen=True)
class PreflightOptions:
    """What the run needs; invalid values raise ConfigError naming the flag."""

    require_gpu: bool = False
    min_gpu_memory_gb: float = 8.0
    recommended_gpu_memory_gb: float = 16.0
    ports: int = 4
    min_free_disk_gb: float = 1.0
    weights_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.min_gpu_memory_gb > 0:
            raise ConfigError("--min-gpu-memory-gb", self.min_gpu_memory_gb, "must be > 0")
        if self.recommended_gpu_memory_gb < self.min_gpu_memory_gb:
            raise ConfigError("--recommended-gpu-memory-gb", self.recommended_gpu_memory_gb,
                              f"must be >= --min-gpu-memory-gb ({self.min_gpu_memory_gb})")
        if not 0 <= self.ports <= 1000:
            raise ConfigError("--ports", self.ports, "must be between 0 and 1000")
        if not self.min_free_disk_gb >= 0:
            raise ConfigError("--min-free-disk-gb", self.min_free_disk_gb, "must be >= 0")


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3]), minimum: tuple[int, int] = MIN_PYTHON) -> Finding:
    """Return pass when ``version`` >= ``minimum``, else fail."""
    text = ".".join(map(str, version))
    if tuple(version[:2]) >= minimum:
        return Finding("python", PASS, f"Python {text}")
    return Finding("python", FAIL, f"Python {text}; the harness needs {'.'.join(map(str, minimum))} or newer")


def check_torch(torch_part: Mapping[str, Any]) -> Finding:
    """Return pass with torch's version when it imports, fail when absent (the service needs it)."""
    if torch_part.get("version", TORCH_ABSENT) == TORCH_ABSENT:
        return Finding("torch", FAIL, f"torch cannot be imported: {torch_part.get('reason', 'not installed')} "
                                      f"(the service extra: pip install '{DISTRIBUTION}[service]')")
    build = f"CUDA {torch_part['cuda_runtime']} build" if torch_part.get("cuda_runtime") else "CPU build"
    return Finding("torch", PASS, f"torch {torch_part['version']} ({build}, {torch_part.get('num_threads')} threads)")


def _gpu_missing(name: str, require_gpu: bool, detail: str) -> Finding:
    return Finding(name, FAIL if require_gpu else ABSENT, detail + ("; this run requires a GPU" if require_gpu else ""))


def _version_tuple(text: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split(".")[:2])
    except ValueError:
        return ()


def check_cuda_runtime(torch_part: Mapping[str, Any], gpu: GpuInventory, require_gpu: bool = False) -> Finding:
    """Return whether torch's CUDA runtime can use the GPU (pass), cannot (warn/fail) or there is none (absent)."""
    runtime = torch_part.get("cuda_runtime")
    if torch_part.get("version", TORCH_ABSENT) == TORCH_ABSENT:
        return _gpu_missing("cuda_runtime", require_gpu, "no torch, so no CUDA runtime")
    if not runtime:
        if gpu.present:
            return Finding("cuda_runtime", FAIL if require_gpu else WARN,
                           f"torch {torch_part['version']} is a CPU build but a GPU is present: inference runs on CPU")
        return _gpu_missing("cuda_runtime", require_gpu, f"torch {torch_part['version']} is a CPU build")
    if gpu.present and gpu.cuda_driver_version and _version_tuple(gpu.cuda_driver_version) < _version_tuple(runtime):
        return Finding("cuda_runtime", FAIL if require_gpu else WARN,
                       f"CUDA runtime {runtime} is newer than the driver supports ({gpu.cuda_driver_version}); update the driver")
    if not torch_part.get("cuda_available"):
        why = torch_part.get("cuda_error") or (gpu.reason if not gpu.present else "torch.cuda.is_available() is False")
        if not gpu.present:
            return _gpu_missing("cuda_runtime", require_gpu, f"CUDA runtime {runtime} installed, no GPU: {why}")
        return Finding("cuda_runtime", FAIL if require_gpu else WARN, f"CUDA runtime {runtime} cannot use the GPU: {why}")
    return Finding("cuda_runtime", PASS, f"CUDA runtime {runtime}, usable by torch")


def check_cudnn(torch_part: Mapping[str, Any], gpu: GpuInventory, require_gpu: bool = False) -> Finding:
    """Return pass with cuDNN's version; absent without a GPU stack; warn when a GPU has no cuDNN."""
    version = torch_part.get("cudnn")
    if version:
        return Finding("cudnn", PASS, f"cuDNN {version}")
    if gpu.present and torch_part.get("cuda_runtime"):
        # the reference models need no convolutions, so missing cuDNN slows some models, it blocks none
        return Finding("cudnn", WARN, "cuDNN not available to torch; convolution models will be slow")
    return _gpu_missing("cudnn", require_gpu, "no cuDNN (no CUDA build of torch or no GPU)")


def check_nvidia_driver(gpu: GpuInventory, require_gpu: bool = False) -> Finding:
    """Return pass with the driver and its CUDA version (via NVML), absent/fail without one."""
    if not gpu.present:
        return _gpu_missing("nvidia_driver", require_gpu, gpu.reason or "no GPU")
    return Finding("nvidia_driver", PASS,
                   f"driver {gpu.driver_version} (supports CUDA {gpu.cuda_driver_version}), {len(gpu.devices)} GPU(s)")


def check_gpu_memory(gpu: GpuInventory, min_gb: float = 8.0, recommended_gb: float = 16.0,
                     require_gpu: bool = False) -> Finding:
    """Return pass at >= ``recommended_gb``, warn between the two, fail under ``min_gb`` (largest GPU)."""
    if not gpu.present or not gpu.devices:
        return _gpu_missing("gpu_memory", require_gpu, f"no GPU to hold the model (needs {min_gb:g} GB)")
    boards = ", ".join(
        f"#{d.index} {d.name} {d.memory_total_mb * _MIB / _GB:.1f} GB ({d.memory_total_mb / 1024:.1f} GiB)"
        for d in gpu.devices)
    best_gb = max(d.memory_total_mb for d in gpu.devices) * _MIB / _GB  # a run can be pinned to the largest
    if best_gb < min_gb:
        return Finding("gpu_memory", FAIL, f"{boards}: under the model's minimum of {min_gb:g} GB")
    if best_gb < recommended_gb:
        return Finding("gpu_memory", WARN, f"{boards}: meets the {min_gb:g} GB minimum, under the {recommended_gb:g} GB recommended")
    return Finding("gpu_memory", PASS, f"{boards}: >= {recommended_gb:g} GB recommended")


def _probe_cgroup(parent: Path, limit_file: str) -> str | None:
    """Create and remove a child cgroup under ``parent``; return None on success, else why not."""
    if not parent.is_dir():
        return f"{parent} does not exist"
    child = parent / f"harness-preflight-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        child.mkdir()
    except OSError as exc:
        return f"cannot create a cgroup under {parent}: {exc.strerror or exc}"
    try:
        if not (child / limit_file).exists():
            return f"{child.name} has no {limit_file}"
        return None
    finally:
        try:
            child.rmdir()
        except OSError:
            pass  # a just-created empty cgroup always removes; nothing sensible to do otherwise


def check_cgroups(root: Path = CGROUP_ROOT) -> list[Finding]:
    """Return one finding each for the memory and cpu controllers: pass when a limit can be set.

    Probes for real (creates and removes an empty child cgroup). Not writable is a warning:
    runs go on, but limits.memory/limits.cpu are not enforced and OOM-kill faults cannot run.
    """
    v2 = (root / "cgroup.controllers").is_file()
    if v2:
        try:
            enabled = set((root / "cgroup.subtree_control").read_text().split())
        except OSError:
            enabled = set()
    findings = []
    for controller, v1_file, v2_file in (("memory", "memory.limit_in_bytes", "memory.max"),
                                         ("cpu", "cpu.cfs_quota_us", "cpu.max")):
        name = f"cgroup_{controller}"
        if v2:
            problem = (f"the {controller} controller is not enabled in {root}/cgroup.subtree_control"
                       if controller not in enabled else _probe_cgroup(root, v2_file))
            version = "v2"
        elif (root / controller).is_dir():
            problem, version = _probe_cgroup(root / controller, v1_file), "v1"
        else:
            problem, version = f"no {controller} controller mounted under {root}", "none"
        if problem is None:
            findings.append(Finding(name, PASS, f"cgroup {version} {controller} controller writable: limits enforced"))
        else:
            findings.append(Finding(name, WARN, f"cgroup {version}: {problem}; limits.{controller} will not be enforced"))
    return findings


def check_ports(count: int = 4, host: str = "127.0.0.1") -> Finding:
    """Return pass when ``count`` loopback ports can be bound at once (replicas, balancer, prober)."""
    if count == 0:
        return Finding("ports", PASS, "no ports requested")
    try:
        with ExitStack() as stack:
            ports = []
            for _ in range(count):
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((host, 0))
                ports.append(sock.getsockname()[1])
    except OSError as exc:
        return Finding("ports", FAIL, f"could not bind {count} ports on {host}: {exc}")
    return Finding("ports", PASS, f"{count} free ports on {host} (e.g. {ports[0]})")


def check_disk(path: Path, min_free_gb: float = 1.0) -> Finding:
    """Return pass when the filesystem holding ``path`` (or its nearest existing parent) has room."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free_gb = shutil.disk_usage(probe).free / _GB
    except OSError as exc:
        return Finding("disk", FAIL, f"cannot read free space at {probe}: {exc}")
    where = f"{probe}" if probe == Path(path).expanduser().absolute() else f"{probe} (weights go to {path})"
    detail = f"{free_gb:.1f} GB free at {where}; need {min_free_gb:g} GB"
    return Finding("disk", PASS if free_gb >= min_free_gb else FAIL, detail)


def _inventory() -> GpuInventory:
    try:
        return query_gpus()
    except GpuError as exc:  # a GPU that is there but not answering is as good as none
        return GpuInventory(present=False, reason=str(exc))


def run_preflight(options: PreflightOptions | None = None) -> list[Finding]:
    """Run every check and return the findings in a fixed order (imports torch; never raises)."""
    from harness.config import default_weights_dir

    options = options or PreflightOptions()
    torch_part = torch_info()
    gpu = _inventory()
    return [
        check_python(),
        check_torch(torch_part),
        check_cuda_runtime(torch_part, gpu, options.require_gpu),
        check_cudnn(torch_part, gpu, options.require_gpu),
        check_nvidia_driver(gpu, options.require_gpu),
        check_gpu_memory(gpu, options.min_gpu_memory_gb, options.recommended_gpu_memory_gb, options.require_gpu),
        *check_cgroups(),
        check_ports(options.ports),
        check_disk(options.weights_dir or default_weights_dir(), options.min_free_disk_gb),
    ]


def failed_findings(findings: list[Finding]) -> list[Finding]:
    """Return the findings whose status is fail."""
    return [f for f in findings if f.status == FAIL]


def validate_preflight(findings: list[Finding]) -> None:
    """Raise VerdictFailed listing every failed check; return None when none failed."""
    failed = failed_findings(findings)
    if failed:
        raise VerdictFailed(f"preflight: {len(failed)} requirement(s) not met",
                            [f"{f.name}: {f.detail}" for f in failed])


def render_table(findings: list[Finding]) -> str:
    """Return the findings as an aligned text table with a closing summary line, for people."""
    width = max([len("check")] + [len(f.name) for f in findings])
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{f.name:<{width}}  {f.status.upper():<6}  {f.detail}" for f in findings]
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    verdict = "FAILED" if counts[FAIL] else "OK"
    lines.append(f"preflight {verdict}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def findings_to_json(findings: list[Finding], options: PreflightOptions | None = None) -> dict[str, Any]:
    """Return the machine-readable form: ``{"ok", "require_gpu", "checks": [...], "failed": [names]}``."""
    options = options or PreflightOptions()
    return {
        "ok": not failed_findings(findings),
        "require_gpu": options.require_gpu,
        "checks": [f.to_dict() for f in findings],
        "failed": [f.name for f in failed_findings(findings)],
    }
