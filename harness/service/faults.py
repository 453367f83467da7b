"""Fault hooks: validated fault requests, the set of active faults, and the memory a fault holds.

The HTTP side (`harness.service.app`) authenticates and calls `FaultManager.inject`; the handlers
consult `probe_delay_s`, `inference_delay_s` and `inference_factor`; hang and crash are acted on by the app after the
reply is sent. Every fault expires by itself (``duration_s``, or the crash's own exit).

Kinds and parameters, and their validation, are `harness.faultparams` (shared with the service
spec's ``start_faults``).
"""

from __future__ import annotations

import mmap
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.faultparams import FaultError, validate_fault

__all__ = ["Fault", "FaultManager", "stretch_wait_s", "MemoryBallast"]

_MB = 2**20
_LEAK_TICK_S = 0.1


class MemoryBallast:
    """Really allocated, page-touched memory, grown by a thread at a rate or to a target, freed on stop."""

    def __init__(self, rate_mb_s: float | None, target_mb: float | None, max_mb: float, duration_s: float) -> None:
        self.rate_mb_s = rate_mb_s
        self._deadline = time.monotonic() + duration_s
        self.target_mb = target_mb
        self.max_mb = max_mb if rate_mb_s else (target_mb or 0.0)
        # anonymous mappings of our own, not the allocator's heap: malloc serves chunks under its
        # (dynamic, up to 32 MiB) mmap threshold from an arena it may never give back, so a cleared
        # leak could keep its RSS; munmap on release returns every page to the kernel at once
        self._chunks: list[mmap.mmap] = []
        self.allocated_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-memory", daemon=True)
        self._thread.start()

    def _allocate(self, size_mb: float) -> None:
        size_mb = min(size_mb, self.max_mb - self.allocated_mb)
        if size_mb <= 0:
            return
        chunk = mmap.mmap(-1, max(1, int(size_mb * _MB)))
        pages = np.frombuffer(chunk, dtype=np.uint8)
        pages.fill(1)  # touch every page so the kernel counts it in RSS (and a cgroup limit bites)
        del pages  # no view may outlive the mapping, or close() refuses
        self._chunks.append(chunk)
        self.allocated_mb += size_mb

    def _run(self) -> None:
        # the thread frees the memory itself at expiry, so it is released even while the loop hangs
        if self.target_mb is not None:
            while self.allocated_mb < self.target_mb and not self._stop.is_set():
                self._allocate(min(256.0, self.target_mb - self.allocated_mb))
            self._stop.wait(max(0.0, self._deadline - time.monotonic()))
        else:
            assert self.rate_mb_s is not None
            started = time.monotonic()
            while not self._stop.wait(min(_LEAK_TICK_S, max(0.0, self._deadline - time.monotonic()))):
                if time.monotonic() >= self._deadline:
                    break
                self._allocate(self.rate_mb_s * (time.monotonic() - started) - self.allocated_mb)
        for chunk in self._chunks:
            chunk.close()
        self._chunks.clear()
        self.allocated_mb = 0.0

    def stop(self) -> None:
        """Stop growing and release the memory."""
        self._stop.set()
        self._thread.join(timeout=5.0)


@dataclass
class Fault:
    """One injected fault and when it ends."""

    id: int
    kind: str
    params: dict[str, Any]
    started_at_s: float
    expires_at_s: float
    ballast: MemoryBallast | None = field(default=None, repr=False)
    timer: Any = field(default=None, repr=False)  # the event-loop handle of a scheduled crash

    def describe(self) -> dict[str, Any]:
        out = {"id": self.id, "fault": self.kind, "params": self.params, "started_at_s": self.started_at_s, "expires_at_s": self.expires_at_s}
        if self.ballast is not None:
            out["allocated_mb"] = round(self.ballast.allocated_mb, 1)
        return out


class FaultManager:
    """The active faults; expired ones are dropped (and their memory freed) whenever they are looked at."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()  # the model worker thread reads slow-inference faults

    def inject(self, kind: str, params: Any) -> Fault:
        """Validate and activate a fault; return it. Raises FaultError."""
        clean = validate_fault(kind, params)
        now = time.time()
        lasts = clean.get("duration_s", clean.get("delay_s", 0.0))
        fault = Fault(self._next_id, kind, clean, now, now + lasts)
        if kind == "memory":
            fault.ballast = MemoryBallast(clean.get("rate_mb_s"), clean.get("target_mb"), clean.get("max_mb", 0.0), clean["duration_s"])
        with self._lock:
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def active(self) -> list[Fault]:
        """Return the faults still in force, releasing the expired ones."""
        now = time.time()
        with self._lock:
            expired = [f for f in self._faults if f.expires_at_s <= now and f.kind != "crash"]
            if expired:
                self._faults = [f for f in self._faults if f not in expired]
        for fault in expired:
            if fault.ballast is not None:
                fault.ballast.stop()
        return list(self._faults)

    def clear(self) -> int:
        """End every fault, calling back a crash still scheduled; return how many were active."""
        with self._lock:
            faults, self._faults = self._faults, []
        for fault in faults:
            if fault.ballast is not None:
                fault.ballast.stop()
            if fault.timer is not None:
                fault.timer.cancel()
        return len(faults)

    def counts(self) -> dict[str, int]:
        """Return the number of active faults per kind."""
        counts: dict[str, int] = {}
        for fault in self.active():
            counts[fault.kind] = counts.get(fault.kind, 0) + 1
        return counts

    def probe_delay_s(self, probe: str) -> float:
        """Return the delay to add to the ``probe`` ("live"/"ready") endpoint now."""
        if not self._faults:
            return 0.0
        delays = [f.params["delay_s"] for f in self.active() if f.kind == "probe-delay" and f.params["probe"] == probe]
        return max(delays, default=0.0)

    def inference_delay_s(self) -> float:
        """Return the delay to add to each forward pass now."""
        if not self._faults:
            return 0.0
        delays = [f.params["delay_ms"] for f in self.active() if f.kind == "slow-inference"]
        return max(delays, default=0.0) / 1000.0

    def inference_factor(self) -> float:
        """Return the factor every forward pass's time is stretched by now (1.0: none)."""
        if not self._faults:
            return 1.0
        factors = [f.params["factor"] for f in self.active() if f.kind == "slow-inference"]
        return max(factors, default=1.0)


def stretch_wait_s(forward_s: float, factor: float) -> float:
    """Return how long to wait after a forward pass of ``forward_s`` so that it takes ``factor`` x as long."""
    return max(0.0, (factor - 1.0) * forward_s)
