"""NVIDIA GPUs seen through NVML (`nvidia-ml-py`, module ``pynvml``): the one place that calls it.

The environment fingerprint, `harness preflight` and the telemetry sampler all go through
`NvmlSession`, so NVML's quirks are handled once:

- A machine without a GPU is a normal state, not an error: `nvmlInit` raises
  ``NVMLError_LibraryNotFound`` (no driver installed) or ``NVMLError_DriverNotLoaded``; the session
  then reports ``present=False`` with a human ``reason``, and callers report the GPU as absent, never
  as zeros.
- A value a device does not support (power on some boards, utilisation under MIG) is ``None``.
- Any other NVML failure while querying is translated into `GpuError` (a `HarnessError`), chained.

Memory is in MiB (``*_mb``, 2**20 bytes) like the rest of the harness; power in watts.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from harness.errors import HarnessError

__all__ = ["GpuError", "GpuDevice", "GpuInventory", "GpuSample", "NvmlSession", "query_gpus", "FakeNvml"]

_MIB = 2**20


class GpuError(HarnessError):
    """NVML was initialised but a query failed (GPU fell off the bus, driver reset, ...)."""


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML lists it."""

    index: int
    name: str
    uuid: str | None
    memory_total_mb: float


@dataclass(frozen=True)
class GpuInventory:
    """What NVML sees: ``present`` False with a ``reason`` when there is no usable GPU."""

    present: bool
    reason: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the newest CUDA the driver supports, "12.4"
    devices: tuple[GpuDevice, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: ``{"present": false, "reason": ...}`` when absent (no zero fields)."""
        if not self.present:
            return {"present": False, "reason": self.reason}
        return {
            "present": True,
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "count": len(self.devices),
            "devices": [asdict(d) for d in self.devices],
        }


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU; ``None`` where the device does not report the value."""

    index: int
    util_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    power_w: float | None
    process_memory_mb: dict[int, float] = field(default_factory=dict)  # pid -> MiB held on this GPU


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _absent_reason(exc: BaseException) -> str:
    """Return why NVML could not start, in words a person acts on."""
    name = type(exc).__name__
    if name == "NVMLError_LibraryNotFound":
        return "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) was not found"
    if name == "NVMLError_DriverNotLoaded":
        return "the NVIDIA driver is installed but not loaded"
    if name == "NVMLError_NoPermission":
        return "no permission to open the NVIDIA devices"
    return f"NVML could not start: {exc}"


class NvmlSession:
    """An NVML session (context manager): `open` never raises for a missing GPU; `present` says.

    NVML reference-counts `nvmlInit`/`nvmlShutdown`, so sessions may nest or overlap across threads.
    """

    def __init__(self) -> None:
        self.present = False
        self.reason: str | None = "NVML session not opened"
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._lock = threading.Lock()

    def open(self) -> "NvmlSession":
        """Initialise NVML and list the devices; on failure set ``present=False`` and ``reason``."""
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"nvidia-ml-py (pynvml) is not installed: {exc}"
            return self
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.reason = _absent_reason(exc)
            return self
        except OSError as exc:  # a broken libnvidia-ml install surfaces as a loader error
            self.reason = f"NVML could not be loaded: {exc}"
            return self
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            self.close()
            self.reason = f"NVML could not list the GPUs: {exc}"
            return self
        if not self._handles:
            self.close()
            self.reason = "the NVIDIA driver is loaded but reports no GPU"
            return self
        self.present, self.reason = True, None
        return self

    def close(self) -> None:
        """Shut the session down (idempotent)."""
        nvml, self._nvml, self._handles, self.present = self._nvml, None, [], False
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass  # shutting down a session that lost its driver must not mask the real problem

    def __enter__(self) -> "NvmlSession":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, name: str, *args: Any, optional: bool = False) -> Any:
        """Call NVML function ``name``; unsupported values are ``None`` when ``optional``; else raise GpuError."""
        nvml = self._nvml
        try:
            return getattr(nvml, name)(*args)
        except nvml.NVMLError as exc:
            unsupported = type(exc).__name__ in ("NVMLError_NotSupported", "NVMLError_NoPermission")
            if optional and unsupported:
                return None
            raise GpuError(f"NVML {name} failed: {exc}") from exc

    def inventory(self) -> GpuInventory:
        """Return the GPUs, driver and CUDA driver version (``present=False`` with the reason if none)."""
        if not self.present:
            return GpuInventory(present=False, reason=self.reason)
        with self._lock:
            driver = self._call("nvmlSystemGetDriverVersion", optional=True)
            cuda = self._call("nvmlSystemGetCudaDriverVersion", optional=True)
            devices = []
            for index, handle in enumerate(self._handles):
                memory = self._call("nvmlDeviceGetMemoryInfo", handle)
                uuid = self._call("nvmlDeviceGetUUID", handle, optional=True)
                devices.append(GpuDevice(
                    index=index,
                    name=_text(self._call("nvmlDeviceGetName", handle)),
                    uuid=_text(uuid) if uuid is not None else None,
                    memory_total_mb=round(memory.total / _MIB, 1),
                ))
        cuda_text = f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) and cuda > 0 else None
        return GpuInventory(
            present=True,
            driver_version=_text(driver) if driver is not None else None,
            cuda_driver_version=cuda_text,
            devices=tuple(devices),
        )

    def sample(self) -> list[GpuSample]:
        """Return one reading per GPU (utilisation, memory, power, per-process memory); [] when absent.

        Raises GpuError when NVML fails for a reason other than an unsupported value.
        """
        if not self.present:
            return []
        samples = []
        with self._lock:
            for index, handle in enumerate(self._handles):
                util = self._call("nvmlDeviceGetUtilizationRates", handle, optional=True)
                memory = self._call("nvmlDeviceGetMemoryInfo", handle, optional=True)
                power_mw = self._call("nvmlDeviceGetPowerUsage", handle, optional=True)
                procs = self._call("nvmlDeviceGetComputeRunningProcesses", handle, optional=True) or []
                per_pid: dict[int, float] = {}
                for proc in procs:
                    used = getattr(proc, "usedGpuMemory", None)
                    # NVML reports "not available" (e.g. under some virtualisation) as None or a sentinel
                    if isinstance(used, int) and 0 <= used < 2**63:
                        per_pid[int(proc.pid)] = round(used / _MIB, 1)
                samples.append(GpuSample(
                    index=index,
                    util_percent=float(util.gpu) if util is not None else None,
                    memory_used_mb=round(memory.used / _MIB, 1) if memory is not None else None,
                    memory_total_mb=round(memory.total / _MIB, 1) if memory is not None else None,
                    power_w=round(power_mw / 1000.0, 1) if power_mw is not None else None,
                    process_memory_mb=per_pid,
                ))
        return samples


def query_gpus() -> GpuInventory:
    """Return the GPU inventory; never raises for a missing GPU (``present=False`` with the reason).

    Raises GpuError when NVML starts but a query on a present GPU fails.
    """
    with NvmlSession() as session:
        return session.inventory()


class FakeNvml:
    """A stand-in for the NVML library, for tests on machines without a GPU (as httpx ships a fake transport).

    ``devices``: dicts with ``name``, ``memory_total_mb``, ``memory_used_mb``, ``util_percent``,
    ``power_w`` (None: not supported) and ``processes`` ({pid: MiB}). ``init_error``: a pynvml error
    code for `nvmlInit` to fail with (e.g. ``pynvml.NVML_ERROR_LIBRARY_NOT_FOUND``). `functions`
    returns the pynvml functions to patch in, ``{name: replacement}``; they raise real pynvml errors.
    """

    def __init__(self, devices: list[dict[str, Any]] | None = None, *, driver_version: str = "550.54.15",
                 cuda_driver_version: int = 12040, init_error: int | None = None) -> None:
        self.devices = [dict(d) for d in (devices or [])]
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.initialised = 0  # nvmlInit calls not yet matched by nvmlShutdown

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Return ``{pynvml function name: fake}`` covering every call `NvmlSession` makes."""
        import pynvml

        def init() -> None:
            if self.init_error is not None:
                raise pynvml.NVMLError(self.init_error)
            self.initialised += 1

        def shutdown() -> None:
            self.initialised -= 1

        def device(handle: int) -> dict[str, Any]:
            return self.devices[handle]

        def memory(handle: int) -> Any:
            info = pynvml.c_nvmlMemory_t()
            info.total = int(device(handle)["memory_total_mb"] * _MIB)
            info.used = int(device(handle).get("memory_used_mb", 0) * _MIB)
            info.free = info.total - info.used
            return info

        def util(handle: int) -> Any:
            value = device(handle).get("util_percent")
            if value is None:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            rates = pynvml.c_nvmlUtilization_t()
            rates.gpu, rates.memory = int(value), 0
            return rates

        def power(handle: int) -> int:
            value = device(handle).get("power_w")
            if value is None:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return int(value * 1000)

        def processes(handle: int) -> list[Any]:
            procs = []
            for pid, used_mb in device(handle).get("processes", {}).items():
                proc = pynvml.c_nvmlProcessInfo_t()
                proc.pid, proc.usedGpuMemory = int(pid), int(used_mb * _MIB)
                procs.append(proc)
            return procs

        return {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": lambda: len(self.devices),
            "nvmlDeviceGetHandleByIndex": lambda index: index,
            "nvmlSystemGetDriverVersion": lambda: self.driver_version,
            "nvmlSystemGetCudaDriverVersion": lambda: self.cuda_driver_version,
            "nvmlDeviceGetName": lambda handle: device(handle)["name"],
            "nvmlDeviceGetUUID": lambda handle: f"GPU-fake-{handle}",
            "nvmlDeviceGetMemoryInfo": memory,
            "nvmlDeviceGetUtilizationRates": util,
            "nvmlDeviceGetPowerUsage": power,
            "nvmlDeviceGetComputeRunningProcesses": processes,
        }
