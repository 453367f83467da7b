"""The load generator's own CPU, sampled from outside, and the rule that calls a generator saturated.

A closed-loop generator that runs out of CPU sends fewer requests and measures its own queueing as
service latency, so its numbers describe the generator, not the service. The sampler watches the
generator's process (and its children) with psutil from a thread of the harness process.

**Saturated** (``generator_saturated``): within the load window (first to last request), at least
`SATURATED_FRACTION` of the samples, and at least `SATURATED_MIN_SAMPLES` of them, show the generator
above `SATURATED_PERCENT` of one core. A generator is single-threaded (gevent, asyncio), so one core
is its ceiling; a fifth of the run pinned there is sustained, not a blip such as start-up imports.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass

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
    interval_s: float = DEFAULT_INTERVAL_S,
) -> CpuStats:
    """Return the CPU statistics of the ``(time_s, percent)`` samples taken in ``[start_s, end_s]``.

    A sample covers the interval that ends at its time, so one ending up to half an interval past
    ``end_s`` still counts. Never raises; no samples gives NaN figures and ``saturated`` False.
    """
    lo = -math.inf if start_s is None else start_s + interval_s * 0.5
    hi = math.inf if end_s is None else end_s + interval_s * 0.5
    window = [p for t, p in samples if lo <= t <= hi]
    if not window:
        return CpuStats(0, math.nan, math.nan, math.nan, False, interval_s)
    busy = sum(1 for p in window if p > SATURATED_PERCENT)
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
    process ends sampling quietly.
    """

    def __init__(self, pid: int, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r}: must be greater than zero")
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
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
        """Return `check_saturation` over the samples so far, in ``[start_s, end_s]``."""
        return check_saturation(list(self.samples), start_s, end_s, self.interval_s)

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
