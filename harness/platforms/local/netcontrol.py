"""The supervisor's side of the balancer's network faults: validate, inject, clear, record, time out.

Reached over the deployment's control channel (`harness.platforms.local.control`) with two operations:

- ``network_fault``: the fault's fields (`harness.platforms.local.netfaults.parse_fault`: ``kind``,
  ``duration_s`` and the kind's own); a partition must name a replica of the deployment. Answers
  ``{"fault": {..., "id", "time_s", "expires_at_s"}}``; a bad value is a `ConfigError` naming the field.
- ``clear_network_faults``: optional ``kind`` and ``replica``; ends the matching faults (all when
  neither is given) and answers ``{"cleared": [id, ...]}``.

Each fault becomes one control line to the balancer, which applies it and ends it after its duration
on its own clock. The supervisor records the platform events: ``NetworkFaultInjected`` and, when the
fault ends, ``NetworkFaultCleared`` with the reason (Cleared, Expired, Replaced, TornDown), the replica
being the partitioned one (null for the other kinds). The active faults are in the state file under
``network_faults``. Everything runs on the supervisor's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from harness.errors import ConfigError, DeploymentError
from harness.platforms.base import NETWORK_FAULT_CLEARED, NETWORK_FAULT_INJECTED
from harness.platforms.local.eventlog import EventLog
from harness.platforms.local.netfaults import NetworkFault, parse_fault, parse_kind

__all__ = ["NetworkFaultControl", "describe_fault"]


def describe_fault(fault: NetworkFault) -> str:
    """Return one line saying what ``fault`` does ("abort 20% of requests with 503 for 10 s")."""
    share = f"{fault.percent:g}% of"
    what = {
        "latency": f"add {fault.delay_ms:g} ms to {share} requests",
        "abort": f"abort {share} requests with {fault.status}",
        "reset": f"reset the connection of {share} requests",
        "partition": f"cut replica {fault.replica} off the balancer",
    }[fault.kind]
    return f"{what} for {fault.duration_s:g} s"


@dataclasses.dataclass
class _Injected:
    fault: NetworkFault
    time_s: float
    timer: asyncio.TimerHandle

    def status(self) -> dict[str, Any]:
        return {**self.fault.to_dict(), "time_s": self.time_s, "expires_at_s": self.time_s + self.fault.duration_s}


class NetworkFaultControl:
    """The network faults of one deployment. ``send`` writes a control line to the balancer (raises
    DeploymentError when it cannot), ``replica_names`` returns the deployment's replicas now,
    ``on_change`` rewrites the state file."""

    def __init__(self, send: Callable[[dict], None] | None, events: EventLog, replica_names: Callable[[], list[str]],
                 on_change: Callable[[], None]) -> None:
        self._send = send
        self._events = events
        self._names = replica_names
        self._on_change = on_change
        self._active: dict[str, _Injected] = {}
        self._count = 0

    @property
    def ops(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The control channel's operations this adds."""
        return {"network_fault": self._op_inject, "clear_network_faults": self._op_clear}

    def status(self) -> list[dict[str, Any]]:
        """Return the active faults (for the state file), oldest first."""
        return [injected.status() for injected in self._active.values()]

    async def _op_inject(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"fault": self.inject(request)}

    async def _op_clear(self, request: dict[str, Any]) -> dict[str, Any]:
        for name in request:
            if name not in ("kind", "replica"):
                raise ConfigError(str(name), request[name], "not a field of clear_network_faults (it takes kind, replica)")
        kind = parse_kind(request["kind"]) if request.get("kind") is not None else None
        replica = request.get("replica")
        if replica is not None and not isinstance(replica, str):
            raise ConfigError("replica", replica, "a replica's name")
        return {"cleared": self.clear(kind, replica)}

    def inject(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Start the fault ``request`` describes; return it with its id and times. Raises ConfigError for a
        bad value, DeploymentError when the balancer cannot be told."""
        if self._send is None:
            raise DeploymentError("this deployment has no front balancer to inject a network fault into")
        if "id" in request:
            raise ConfigError("id", request["id"], "chosen by the deployment; leave it out")
        fault = parse_fault(request)
        if fault.kind == "partition" and fault.replica not in (names := self._names()):
            raise ConfigError("replica", fault.replica, f"no such replica (replicas: {', '.join(names) or 'none'})")
        self._count += 1
        fault = dataclasses.replace(fault, id=f"{fault.kind}-{self._count}")
        self._send({"fault": fault.to_dict()})  # the balancer replaces a fault of the same slot itself
        for old in [i for i in self._active.values() if i.fault.slot == fault.slot]:
            self._end(old.fault.id, "Replaced")
        now = time.time()
        timer = asyncio.get_running_loop().call_later(fault.duration_s, self._end, fault.id, "Expired")
        self._active[fault.id] = injected = _Injected(fault, now, timer)
        self._events.emit(NETWORK_FAULT_INJECTED, fault.replica, "NetworkFaultInjected", describe_fault(fault),
                          fault_id=fault.id, **{k: v for k, v in fault.to_dict().items() if k not in ("id", "replica")})
        self._on_change()
        return injected.status()

    def clear(self, kind: str | None = None, replica: str | None = None) -> list[str]:
        """End the active faults of ``kind`` (on ``replica``; all when both are None); return their ids."""
        ids = [fault_id for fault_id, i in self._active.items()
               if (kind is None or i.fault.kind == kind) and (replica is None or i.fault.replica == replica)]
        if ids and self._send is not None:
            try:
                self._send({"clear_faults": ids})
            except DeploymentError:
                pass  # the balancer is gone, and its faults with it
        for fault_id in ids:
            self._end(fault_id, "Cleared")
        return ids

    def stop(self) -> None:
        """Record the end of every active fault (teardown: the balancer stops with them)."""
        for fault_id in list(self._active):
            self._end(fault_id, "TornDown")

    def _end(self, fault_id: str, reason: str) -> None:
        injected = self._active.pop(fault_id, None)
        if injected is None:
            return
        injected.timer.cancel()
        fault = injected.fault
        lasted = time.time() - injected.time_s
        self._events.emit(NETWORK_FAULT_CLEARED, fault.replica, reason, f"{fault.kind} fault {fault.id} ended after "
                          f"{lasted:.1f} s ({reason.lower()})", fault_id=fault.id, kind=fault.kind,
                          lasted_s=round(lasted, 3))
        self._on_change()
