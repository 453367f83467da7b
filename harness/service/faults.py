"""Fault hooks: validated fault requests, the set of active faults, and the memory a fault holds.

The HTTP side (`harness.service.app`) authenticates and calls `FaultManager.inject`; the handlers
consult `probe_delay_s`, `inference_delay_s` and `inference_factor`; hang and crash are acted on by the app after the
reply is sent. Every fault expires by itself (``duration_s``, or the crash's own exit).

Kinds and parameters (anything else is refused naming the field and value):
  probe-delay     probe "live"|"ready", delay_s >= 0, duration_s
  slow-inference  delay_ms >= 0 (added to every forward pass, whatever its size) and/or
                  factor >= 1 (every forward pass takes factor x its own measured time: a build that
                  is proportionally slower, e.g. 1.1 = 10% slower), duration_s; at least one of the two
  memory          rate_mb_s (a leak, growing until duration_s or max_mb) or target_mb (a hog), duration_s
  hang            duration_s: the event loop is blocked, so nothing is answered, then it resumes
  crash           exit_code (default 1), delay_s (default 0): os._exit after the delay
"""

from __future__ import annotations

import math
import mmap
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FAULT_KINDS", "FaultError", "Fault", "FaultManager", "validate_fault", "stretch_wait_s", "MemoryBallast"]

FAULT_KINDS = ("probe-delay", "slow-inference", "memory", "hang", "crash")
MAX_DURATION_S = 3600.0
MAX_SLOWDOWN_FACTOR = 100.0
DEFAULT_DURATION_S = {"probe-delay": 30.0, "slow-inference": 30.0, "memory": 30.0, "hang": 10.0}
DEFAULT_LEAK_CAP_MB = 8192.0  # a leak stops growing here unless max_mb says otherwise: the host is shared
_MB = 2**20
_LEAK_TICK_S = 0.1


class FaultError(Exception):
    """A fault request the service refuses; ``status`` is the HTTP code (400 bad params, 404 unknown kind)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _number(params: dict[str, Any], name: str, default: float | None, low: float, high: float, *, strict_low: bool = False) -> float:
    value = params.get(name, default)
    if value is None:
        raise FaultError(f"{name}: required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultError(f"{name}={value!r}: must be a finite number")
    if value < low or (strict_low and value == low) or value > high:
        bound = f"> {low}" if strict_low else f">= {low}"
        raise FaultError(f"{name}={value!r}: must be {bound} and <= {high}")
    return float(value)


def validate_fault(kind: str, params: Any) -> dict[str, Any]:
    """Return the normalised parameters of a fault request; raise FaultError naming the field and value."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}", status=404)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FaultError(f"body must be a JSON object of parameters, got {type(params).__name__}")
    allowed = {
        "probe-delay": {"probe", "delay_s", "duration_s"},
        "slow-inference": {"delay_ms", "factor", "duration_s"},
        "memory": {"rate_mb_s", "target_mb", "max_mb", "duration_s"},
        "hang": {"duration_s"},
        "crash": {"exit_code", "delay_s"},
    }[kind]
    for name in params:
        if name not in allowed:
            raise FaultError(f"{name}={params[name]!r}: unknown parameter for {kind}; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    if kind != "crash":
        out["duration_s"] = _number(params, "duration_s", DEFAULT_DURATION_S[kind], 0.0, MAX_DURATION_S, strict_low=True)
    if kind == "probe-delay":
        probe = params.get("probe")
        if probe not in ("live", "ready"):
            raise FaultError(f"probe={probe!r}: must be 'live' or 'ready'")
        out["probe"] = probe
        out["delay_s"] = _number(params, "delay_s", None, 0.0, MAX_DURATION_S)
    elif kind == "slow-inference":
        if "delay_ms" not in params and "factor" not in params:
            raise FaultError("delay_ms=None, factor=None: give delay_ms (added to every forward pass) "
                             "or factor (x every forward pass's own time), or both")
        out["delay_ms"] = _number(params, "delay_ms", 0.0, 0.0, MAX_DURATION_S * 1000)
        out["factor"] = _number(params, "factor", 1.0, 1.0, MAX_SLOWDOWN_FACTOR)
    elif kind == "memory":
        if ("rate_mb_s" in params) == ("target_mb" in params):
            raise FaultError(f"rate_mb_s={params.get('rate_mb_s')!r}, target_mb={params.get('target_mb')!r}: give exactly one")
        if "rate_mb_s" in params:
            out["rate_mb_s"] = _number(params, "rate_mb_s", None, 0.0, 65536.0, strict_low=True)
            out["max_mb"] = _number(params, "max_mb", DEFAULT_LEAK_CAP_MB, 0.0, 1_048_576.0, strict_low=True)
        else:
            if "max_mb" in params:
                raise FaultError(f"max_mb={params['max_mb']!r}: only applies to a leak (rate_mb_s)")
            out["target_mb"] = _number(params, "target_mb", None, 0.0, 1_048_576.0, strict_low=True)
    elif kind == "crash":
        code = params.get("exit_code", 1)
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise FaultError(f"exit_code={code!r}: must be an integer from 0 to 255")
        out["exit_code"] = code
        out["delay_s"] = _number(params, "delay_s", 0.0, 0.0, MAX_DURATION_S)
    return out


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
