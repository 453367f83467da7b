"""The load generator's own CPU, sampled from outside, and the rule that calls a generator saturated.

A closed-loop generator that runs out of CPU sends fewer requests and measures its own queueing as
service latency, so its numbers describe the generator, not the service. The sampler watches the
generator's process (and its children) with psutil from a thread of the harness process.

**Saturated** (``generator_saturated``): within the load window (first to last request), at least
`SATURATED_FRACTION` of the samples, and at least `SATURATED_MIN_SAMPLES` of them, show the generator
above `SATURATED_PERCENT` of one core. A generator is single-threaded (gevent, asyncio), so one core
is its ceiling; a fifth of the run pinned there is sustained, not a blip such as start-up imports.

A generator of several processes (`harness.load.workers`) is watched by one sampler of all of them:
each process is judged against one core as above (its own samples, `CpuSampler.stats_of`), and the
whole against ``cores`` cores, the most it can use (its processes, or the CPUs they are pinned to,
whichever is fewer): N workers sharing one core saturate it together while none of them is at 90 %.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import psutil

__all__ = ["SATURATED_PERCENT", "SATURATED_FRACTION", "SATURATED_MIN_SAMPLES", "CpuStats", "CpuSampler", "check_saturation"]

SATURATED_PERCENT = 90.0  # of one core
SATURATED_FRACTION = 0.2
SATURATED_MIN_SAMPLES = 2
DEFAULT_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CpuStats:
    """CPU of a generator over the load window, in percent of one core."""

    samples: int
    mean_percent: float
    max_percent: float
    busy_fraction: float  # share of samples above SATURATED_PERCENT
    saturated: bool
    interval_s: float

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def check_saturation(
    samples: list[tuple[float, float]], start_s: float | None = None, end_s: float | None = None,
    interval_s: float = DEFAULT_INTERVAL_S, cores: int = 1,
) -> CpuStats:
    """Return the CPU statistics of the ``(time_s, percent)`` samples taken in ``[start_s, end_s]``.

    A sample covers the interval that ends at its time, so one ending up to half an interval past
    ``end_s`` still counts. ``cores``: the most cores the sampled processes can use; a sample is busy
    above `SATURATED_PERCENT` of each. Never raises; no samples gives NaN figures and ``saturated`` False.
    """
    lo = -math.inf if start_s is None else start_s + interval_s * 0.5
    hi = math.inf if end_s is None else end_s + interval_s * 0.5
    window = [p for t, p in samples if lo <= t <= hi]
    if not window:
        return CpuStats(0, math.nan, math.nan, math.nan, False, interval_s)
    busy = sum(1 for p in window if p > SATURATED_PERCENT * max(cores, 1))
    fraction = busy / len(window)
    return CpuStats(
        samples=len(window),
        mean_percent=sum(window) / len(window),
        max_percent=max(window),
        busy_fraction=fraction,
        saturated=busy >= SATURATED_MIN_SAMPLES and fraction >= SATURATED_FRACTION,
        interval_s=interval_s,
    )


class CpuSampler:
    """Samples a process tree's CPU (percent of one core) every ``interval_s`` in a daemon thread.

    ``samples`` holds ``(epoch_s, percent)``; start() and stop() are idempotent, and a vanished
    process ends sampling quietly. Given several pids (a generator's worker processes), ``samples``
    holds their sum, judged against ``cores`` cores, and ``samples_by_pid`` each one's own.
    """

    def __init__(self, pid: int | Sequence[int], interval_s: float = DEFAULT_INTERVAL_S, *, cores: int = 1) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r}: must be greater than zero")
        self.pids = [pid] if isinstance(pid, int) else list(pid)
        self.pid = self.pids[0]
        self.interval_s = interval_s
        self.cores = cores
        self.samples: list[tuple[float, float]] = []
        self.samples_by_pid: dict[int, list[tuple[float, float]]] = {p: [] for p in self.pids}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "CpuSampler":
        """Start sampling; return self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"cpu-sampler-{self.pid}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float]]:
        """Stop sampling and return the samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s * 4 + 1.0)
        return self.samples

    def stats(self, start_s: float | None = None, end_s: float | None = None) -> CpuStats:
        """Return `check_saturation` over the samples so far, in ``[start_s, end_s]`` (of ``cores`` cores)."""
        return check_saturation(list(self.samples), start_s, end_s, self.interval_s, self.cores)

    def stats_of(self, pid: int, start_s: float | None = None, end_s: float | None = None) -> CpuStats:
        """Return `check_saturation` over one sampled process's own samples (of one core)."""
        return check_saturation(list(self.samples_by_pid.get(pid, [])), start_s, end_s, self.interval_s)

    def _cpu_seconds(self, root: psutil.Process) -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _run(self) -> None:
        if len(self.pids) == 1:
            return self._run_one()
        return self._run_many()

    def _run_one(self) -> None:
        try:
            root = psutil.Process(self.pid)
            last_cpu, last_t = self._cpu_seconds(root), time.monotonic()
        except psutil.Error:
            return
        while not self._stop.wait(self.interval_s):
            try:
                if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
                    return
                cpu, now = self._cpu_seconds(root), time.monotonic()
            except psutil.Error:
                return
            if now > last_t:
                # a child that exited takes its CPU time with it: never report a negative share
                self.samples.append((time.time(), max(100.0 * (cpu - last_cpu) / (now - last_t), 0.0)))
            last_cpu, last_t = cpu, now

    def _run_many(self) -> None:
        roots: dict[int, psutil.Process] = {}
        for pid in self.pids:
            try:
                roots[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
        last = {pid: self._cpu_or_none(root) for pid, root in roots.items()}
        last_t = time.monotonic()
        while roots and not self._stop.wait(self.interval_s):
            now, stamp, total = time.monotonic(), time.time(), 0.0
            for pid, root in list(roots.items()):
                cpu = self._cpu_or_none(root)
                if cpu is None:  # this worker ended: the others are still sampled
                    del roots[pid]
                    continue
                before = cpu if last.get(pid) is None else last[pid]
                share = max(100.0 * (cpu - before) / (now - last_t), 0.0) if now > last_t else 0.0
                self.samples_by_pid[pid].append((stamp, share))
                total += share
                last[pid] = cpu
            if roots and now > last_t:
                self.samples.append((stamp, total))
            last_t = now

    def _cpu_or_none(self, root: psutil.Process) -> float | None:
        try:
            if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
                return None
            return self._cpu_seconds(root)
        except psutil.Error:
            return None
