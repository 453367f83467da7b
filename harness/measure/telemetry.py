"""Telemetry: per-replica CPU and RSS (psutil) and GPU utilisation/memory/power (NVML) over time.

`TelemetrySampler` is a background thread that samples every ``interval_s`` (1 Hz by default) and
appends to a tidy CSV (`TELEMETRY_FILE`) as it goes, so a run that dies still leaves its telemetry.
Columns (`COLUMNS`), one row per observation:

- ``time_s``: wall-clock epoch seconds (lines up with requests, prober and platform events);
- process rows: ``replica`` (its name), ``pid``, ``cpu_percent`` (100 = one core busy; empty on the
  first sample of a process, which only primes psutil's counter), ``rss_mb`` (MiB); the ``gpu_*``
  columns hold the GPU the process has a context on (device utilisation and power, the process's own
  GPU memory), empty when it uses none;
- device rows, one per GPU and sample when a GPU exists: ``replica`` is ``gpu:<index>``, ``pid``,
  ``cpu_percent`` and ``rss_mb`` empty, ``gpu_*`` the device totals;
- ``gpu_present``: 1 when NVML sees a GPU, 0 when not; without a GPU every ``gpu_*`` cell is empty
  (absent is never written as 0).

Replicas restart, so the sampler asks a callable for ``{replica_name: pid}`` at every sample. A pid
that vanishes mid-sample (replica killed) is skipped; any failing sample is logged and skipped:
an observer never breaks the run it observes. `read_telemetry` returns rows as dicts (empty cells as
``None``), the shape the SLA checks consume.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

from harness.gpu import GpuError, GpuSample, NvmlSession

__all__ = [
    "TELEMETRY_FILE",
    "COLUMNS",
    "DEFAULT_INTERVAL_S",
    "DEVICE_ROW_PREFIX",
    "TelemetrySampler",
    "read_telemetry",
    "is_device_row",
]

log = logging.getLogger(__name__)

TELEMETRY_FILE = "telemetry.csv"
COLUMNS = ("time_s", "replica", "pid", "cpu_percent", "rss_mb", "gpu_index", "gpu_util_percent",
           "gpu_memory_used_mb", "gpu_power_w", "gpu_present")
DEFAULT_INTERVAL_S = 1.0
DEVICE_ROW_PREFIX = "gpu:"
_INT_COLUMNS = {"pid", "gpu_index"}
_FLOAT_COLUMNS = {"time_s", "cpu_percent", "rss_mb", "gpu_util_percent", "gpu_memory_used_mb", "gpu_power_w"}
_MIB = 2**20

PidSource = Callable[[], Mapping[str, "int | None"]]


def is_device_row(row: Mapping[str, Any]) -> bool:
    """Return True for a GPU device row (no process columns), False for a replica's row."""
    return str(row.get("replica", "")).startswith(DEVICE_ROW_PREFIX)


class TelemetrySampler:
    """Samples replica processes and GPUs in a thread, appending rows to ``path`` (a CSV file).

    ``pids`` is a callable returning ``{replica_name: pid or None}`` (None: replica down), or a fixed
    mapping. Use as a context manager, or call `start` and `stop`.
    """

    def __init__(self, path: str | Path, pids: PidSource | Mapping[str, int | None], *,
                 interval_s: float = DEFAULT_INTERVAL_S, gpu: bool = True) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r}: must be > 0")
        self.path = Path(path)
        self.interval_s = float(interval_s)
        self._pids: PidSource = pids if callable(pids) else (lambda fixed=dict(pids): fixed)
        self._want_gpu = gpu
        self._nvml: NvmlSession | None = None
        self.gpu_present = False
        self.gpu_absent_reason: str | None = "GPU sampling disabled" if not gpu else None
        self.samples_taken = 0
        self.errors = 0
        self._processes: dict[int, psutil.Process] = {}
        self._rows: list[dict[str, Any]] = []
        self._rows_lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self._writer: Any = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> "TelemetrySampler":
        """Open the CSV, look for GPUs, prime the CPU counters and start sampling; return self."""
        if self._thread is not None:
            raise RuntimeError("TelemetrySampler already started")
        if self._want_gpu:
            self._nvml = NvmlSession().open()
            self.gpu_present = self._nvml.present
            self.gpu_absent_reason = self._nvml.reason
            if not self.gpu_present:
                log.info("telemetry: GPU absent (%s); gpu columns stay empty", self.gpu_absent_reason)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS)
        self._writer.writeheader()
        self._handle.flush()
        self._prime()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="telemetry-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sampling, close the CSV and NVML (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("telemetry: sampler thread did not stop within %.1f s", timeout_s)
        with self._rows_lock:  # a sample still running after a timed-out join must not write to a closed file
            if self._handle is not None:
                self._handle.close()
            self._handle = self._writer = None
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def __enter__(self) -> "TelemetrySampler":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def rows(self) -> list[dict[str, Any]]:
        """Return a copy of the rows written so far (as `read_telemetry` would return them)."""
        with self._rows_lock:
            return [dict(r) for r in self._rows]

    # sampling --------------------------------------------------------------------------------
    def _loop(self) -> None:
        started = time.monotonic()
        tick = 0
        # Ticks are scheduled from the start time, so slow samples do not make the rate drift.
        while not self._stop.wait(max(0.0, started + (tick + 1) * self.interval_s - time.monotonic())):
            tick += 1
            self.sample_once()
            late = time.monotonic() - (started + tick * self.interval_s)
            if late > self.interval_s:  # a sample took longer than a period: skip the missed ticks
                tick += int(late // self.interval_s)

    def sample_once(self) -> list[dict[str, Any]]:
        """Take one sample now, append its rows to the CSV and return them; never raises.

        A failing sample is logged and counted in ``errors``; its rows are skipped.
        """
        try:
            with self._sample_lock:  # the thread and a direct caller must not interleave psutil state
                rows = self._collect()
            with self._rows_lock:
                if self._writer is not None:
                    self._writer.writerows({k: ("" if v is None else _cell(v)) for k, v in r.items()} for r in rows)
                    self._handle.flush()
                self._rows.extend(rows)
            self.samples_taken += 1
            return rows
        except Exception as exc:  # an observer must never break the run it observes
            self.errors += 1
            log.warning("telemetry: sample skipped: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return []

    def _prime(self) -> None:
        """Start psutil's CPU counters so the first sampled tick already has a percentage."""
        try:
            for pid in self._pids().values():
                if pid is not None:
                    self._process(pid)
        except Exception as exc:
            log.warning("telemetry: could not list replicas at start: %s", exc)

    def _process(self, pid: int) -> tuple[psutil.Process, bool]:
        """Return (psutil process, is_new); a new one has its CPU counter primed. Raises NoSuchProcess."""
        proc = self._processes.get(pid)
        if proc is not None and proc.is_running():  # is_running also detects pid reuse
            return proc, False
        proc = psutil.Process(pid)
        proc.cpu_percent(None)
        self._processes[pid] = proc
        return proc, True

    def _gpu_samples(self) -> list[GpuSample]:
        if self._nvml is None or not self.gpu_present:
            return []
        try:
            return self._nvml.sample()
        except GpuError as exc:
            log.warning("telemetry: GPU sample failed: %s", exc)
            return []

    def _collect(self) -> list[dict[str, Any]]:
        now_s = time.time()
        pids = dict(self._pids())
        gpus = self._gpu_samples()
        present = 1 if self.gpu_present else 0
        rows = []
        for replica, pid in sorted(pids.items()):
            if pid is None:
                continue
            try:
                proc, new = self._process(int(pid))
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped: nothing to measure
                        raise psutil.ZombieProcess(int(pid))
                    cpu = None if new else proc.cpu_percent(None)
                    rss_mb = proc.memory_info().rss / _MIB
            except psutil.NoSuchProcess:  # killed or exited mid-sample (zombies included): no row
                self._processes.pop(int(pid), None)
                continue
            except psutil.AccessDenied as exc:
                log.warning("telemetry: no access to replica %s (pid %s): %s", replica, pid, exc)
                continue
            row = {"time_s": now_s, "replica": replica, "pid": int(pid), "cpu_percent": cpu,
                   "rss_mb": round(rss_mb, 2), "gpu_index": None, "gpu_util_percent": None,
                   "gpu_memory_used_mb": None, "gpu_power_w": None, "gpu_present": present}
            on_gpu = [g for g in gpus if int(pid) in g.process_memory_mb]
            if on_gpu:
                # a replica uses one GPU in this harness; if it holds several, report the largest
                gpu = max(on_gpu, key=lambda g: g.process_memory_mb[int(pid)])
                row.update(gpu_index=gpu.index, gpu_util_percent=gpu.util_percent,
                           gpu_memory_used_mb=gpu.process_memory_mb[int(pid)], gpu_power_w=gpu.power_w)
            rows.append(row)
        live = {int(p) for p in pids.values() if p is not None}
        for stale in set(self._processes) - live:  # forget replicas that are gone or restarted
            del self._processes[stale]
        for gpu in gpus:
            rows.append({"time_s": now_s, "replica": f"{DEVICE_ROW_PREFIX}{gpu.index}", "pid": None,
                         "cpu_percent": None, "rss_mb": None, "gpu_index": gpu.index,
                         "gpu_util_percent": gpu.util_percent, "gpu_memory_used_mb": gpu.memory_used_mb,
                         "gpu_power_w": gpu.power_w, "gpu_present": present})
        return rows


def _cell(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _INT_COLUMNS:
        return int(text)
    if column in _FLOAT_COLUMNS:
        return float(text)
    if column == "gpu_present":
        return text not in ("0", "False", "false")
    return text


def read_telemetry(path: str | Path, *, devices: bool = True) -> list[dict[str, Any]]:
    """Return the rows of a telemetry CSV as dicts keyed by `COLUMNS`, empty cells as ``None``.

    ``devices=False`` leaves out the GPU device rows (keeps replica rows only). Raises OSError when
    the file cannot be read; a row cut short by a crash mid-write is skipped.
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            if any(raw.get(c) is None for c in COLUMNS):
                continue
            try:
                row = {c: _parse(c, raw[c]) for c in COLUMNS}
            except ValueError:
                continue
            if devices or not is_device_row(row):
                rows.append(row)
    return rows
