"""Network faults in the front balancer, as Envoy's fault filter and Toxiproxy inject them: what they are,
how a request is chosen for one, and when one ends.

Four kinds, each injected for a bounded ``duration_s`` (at most `MAX_DURATION_S`):

- ``latency``: ``delay_ms`` added before the request is forwarded (to ``percent`` of requests);
- ``abort``: ``percent`` of requests answered ``status`` (default 503) by the balancer itself, JSON
  ``{"error": "fault injected: ..."}`` with ``x-harness-fault: abort``, never reaching a replica;
- ``reset``: ``percent`` of requests whose client connection the balancer closes without an answer
  (SO_LINGER 0: the client sees a TCP reset, as Toxiproxy's ``reset_peer``);
- ``partition``: replica ``replica`` cut off from the balancer: no new request is routed to it (the
  replica itself is untouched: it runs, passes its probes and stays Ready in the platform's eyes).

Choosing: each fault draws from its own ``random.Random(seed)`` once per request it sees, and applies
when the draw is under ``percent`` / 100, so the same seed picks the same requests of a sequence. A
request first waits out a latency fault, then may be reset, then aborted (Envoy: delay, then abort).

Ending: the table keeps each fault's deadline on its own clock and drops it at the first look after
it, so a fault ends on time whoever injected it, even when that process died meanwhile. One fault per
kind (per replica for a partition): a new one replaces the old. `parse_fault` is the one validation,
used by the supervisor (which answers a bad value as a `ConfigError` naming the field) and by the
balancer (which ignores a bad control line). Standard library only: the balancer imports it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import ConfigError

__all__ = [
    "KINDS",
    "MAX_DURATION_S",
    "MAX_DELAY_MS",
    "FAULT_HEADER",
    "NetworkFault",
    "Decision",
    "FaultTable",
    "parse_fault",
    "parse_kind",
]

KINDS = ("latency", "abort", "reset", "partition")
MAX_DURATION_S = 3600.0
MAX_DELAY_MS = 60_000.0
FAULT_HEADER = "x-harness-fault"
DEFAULT_ABORT_STATUS = 503
_FIELDS = {  # the fields each kind takes, beside kind, duration_s and id
    "latency": ("delay_ms", "percent", "seed"),
    "abort": ("status", "percent", "seed"),
    "reset": ("percent", "seed"),
    "partition": ("replica",),
}


@dataclass(frozen=True)
class NetworkFault:
    """One fault as injected (see the module docstring for what each field means)."""

    kind: str
    duration_s: float
    percent: float = 100.0
    delay_ms: float = 0.0
    status: int = DEFAULT_ABORT_STATUS
    replica: str | None = None
    seed: int = 0
    id: str = ""

    @property
    def slot(self) -> str:
        """What a later fault replaces this one at: its kind, or its kind and replica for a partition."""
        return f"{self.kind}:{self.replica}" if self.kind == "partition" else self.kind

    def to_dict(self) -> dict[str, Any]:
        """Return the fields that mean something for this kind (for control lines, events and stats)."""
        data = asdict(self)
        return {k: v for k, v in data.items() if k in ("kind", "duration_s", "id", *_FIELDS[self.kind])}


def _number(data: Mapping[str, Any], name: str, default: float | None, low: float, high: float, *,
            low_open: bool = True) -> float:
    value = data.get(name, default)
    if value is None:
        raise ConfigError(name, None, f"required for a {data.get('kind')} fault")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value <= high if low_open else low <= value <= high):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise ConfigError(name, value, f"must be a number {bound} and at most {high:g}")
    return float(value)


def parse_kind(value: Any) -> str:
    """Return ``value`` when it is a fault kind; raise ConfigError naming ``kind`` otherwise."""
    if not isinstance(value, str) or value not in KINDS:
        raise ConfigError("kind", value, f"unknown network fault; choose one of {', '.join(KINDS)}")
    return value


def parse_fault(data: Any) -> NetworkFault:
    """Return the fault ``data`` describes (a mapping of its fields); raise ConfigError naming the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError("fault", data, "a network fault is a JSON object with kind, duration_s and its kind's fields")
    kind = parse_kind(data.get("kind"))
    allowed = ("kind", "duration_s", "id", *_FIELDS[kind])
    for name in data:
        if name not in allowed:
            raise ConfigError(str(name), data[name], f"not a field of a {kind} fault (it takes {', '.join(allowed)})")
    fields: dict[str, Any] = {"kind": kind, "duration_s": _number(data, "duration_s", None, 0.0, MAX_DURATION_S)}
    fault_id = data.get("id", "")
    if not isinstance(fault_id, str) or len(fault_id) > 64:
        raise ConfigError("id", fault_id, "must be a string of at most 64 characters")
    fields["id"] = fault_id
    if "percent" in _FIELDS[kind]:
        fields["percent"] = _number(data, "percent", 100.0, 0.0, 100.0)
    if "seed" in _FIELDS[kind]:
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigError("seed", seed, "must be a whole number from 0 to 2**63-1")
        fields["seed"] = seed
    if kind == "latency":
        fields["delay_ms"] = _number(data, "delay_ms", None, 0.0, MAX_DELAY_MS)
    if kind == "abort":
        status = data.get("status", DEFAULT_ABORT_STATUS)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigError("status", status, "must be an HTTP error status, a whole number from 400 to 599")
        fields["status"] = status
    if kind == "partition":
        replica = data.get("replica")
        if not isinstance(replica, str) or not replica or len(replica) > 128:
            raise ConfigError("replica", replica, "a partition names the replica to cut off")
        fields["replica"] = replica
    return NetworkFault(**fields)


@dataclass(frozen=True)
class Decision:
    """What the active faults do to one request: wait ``delay_s``, then reset, or answer ``abort_status``."""

    delay_s: float = 0.0
    reset: bool = False
    abort_status: int | None = None
    abort_id: str = ""


_NOTHING = Decision()


class _Active:
    def __init__(self, fault: NetworkFault, deadline: float) -> None:
        self.fault = fault
        self.deadline = deadline
        self.random = random.Random(fault.seed)
        self.seen = 0  # requests that drew
        self.hit = 0  # requests the fault applied to

    def chosen(self) -> bool:
        self.seen += 1
        if self.random.random() * 100.0 < self.fault.percent:
            self.hit += 1
            return True
        return False


class FaultTable:
    """The balancer's active faults; ``clock`` is monotonic seconds (a fake one in tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._active: dict[str, _Active] = {}
        self.expired = 0
        self.applied = {"latency": 0, "abort": 0, "reset": 0}  # requests each kind changed, over every fault

    def apply(self, fault: NetworkFault) -> None:
        """Start ``fault`` now (replacing the one in its slot); it ends ``duration_s`` from now."""
        self._active[fault.slot] = _Active(fault, self.clock() + fault.duration_s)

    def clear(self, ids: list[str] | None = None) -> list[str]:
        """End the faults with these ids (every fault when None); return the ids ended."""
        ended = [slot for slot, active in self._active.items() if ids is None or active.fault.id in ids]
        return [self._active.pop(slot).fault.id for slot in ended]

    def _expire(self) -> None:
        now = self.clock()
        for slot in [slot for slot, active in self._active.items() if active.deadline <= now]:
            del self._active[slot]
            self.expired += 1

    @property
    def active(self) -> bool:
        """Whether any fault may still apply (cheap: no clock read when the table is empty)."""
        if self._active:
            self._expire()
        return bool(self._active)

    def decide(self) -> Decision:
        """Return what the active faults do to the next request (each fault draws once)."""
        if not self.active:
            return _NOTHING
        delay_s, reset, abort, abort_id = 0.0, False, None, ""
        latency = self._active.get("latency")
        if latency is not None and latency.chosen():
            delay_s = latency.fault.delay_ms / 1000.0
            self.applied["latency"] += 1
        resetting = self._active.get("reset")
        if resetting is not None and resetting.chosen():
            reset = True
            self.applied["reset"] += 1
        aborting = self._active.get("abort")
        if aborting is not None and aborting.chosen() and not reset:  # it draws either way: its choices follow its seed
            abort, abort_id = aborting.fault.status, aborting.fault.id
            self.applied["abort"] += 1
        return Decision(delay_s, reset, abort, abort_id)

    def cut_off(self) -> frozenset[str]:
        """Return the names of the replicas cut off from the balancer now."""
        if not self.active:
            return frozenset()
        return frozenset(a.fault.replica for a in self._active.values() if a.fault.kind == "partition")

    def stats(self) -> dict[str, Any]:
        """Return the active faults (with seconds left and requests seen and hit) and the counters."""
        self._expire()
        now = self.clock()
        active = [{**a.fault.to_dict(), "remaining_s": round(max(0.0, a.deadline - now), 3), "seen": a.seen,
                   "hit": a.hit} for a in self._active.values()]
        return {"active": active, "expired": self.expired, "applied": dict(self.applied)}
