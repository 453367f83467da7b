"""Which CPUs the service and its clients run on: the harness's one CPU-splitting rule (`plan_cpus`).

Every workflow that runs the service and measures it on the same machine (load, sweep, capacity,
chaos, the benchmarks) asks `plan_cpus` and hands the sets to the spawner (`harness.processes.spawn`
pins each child before it execs) and to the local platform (the replicas and the front balancer).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_CPUS_TO_PIN_RESTARTS", "CpuPlan", "usable_cpus", "plan_cpus"]

MIN_CPUS_TO_PIN_RESTARTS = 4  # below this, a run whose replicas restart pins nothing (see `plan_cpus`)


@dataclass(frozen=True)
class CpuPlan:
    """CPUs for the service (replicas and front balancer) and for its clients (load generator and prober).

    None: not pinned (the child runs on every CPU the harness may use).
    """

    service: tuple[int, ...] | None
    generator: tuple[int, ...] | None

    @property
    def shared(self) -> bool:
        """Whether the service and its clients can run on one CPU (nothing pinned, or their sets overlap)."""
        return self.service is None or self.generator is None or bool(set(self.service) & set(self.generator))

    def to_dict(self) -> dict[str, Any]:
        return {"service": list(self.service) if self.service else None,
                "generator": list(self.generator) if self.generator else None}


def usable_cpus() -> list[int]:
    """Return the ids of the CPUs this process may run on, sorted; [] where the platform cannot pin (not Linux)."""
    if not (hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")):
        return []
    return sorted(os.sched_getaffinity(0))


def plan_cpus(available: Iterable[int] | None = None, *, restarts: bool = False,
              replicas: int | None = None) -> CpuPlan:
    """Return where the service and its clients run, out of ``available`` (default: `usable_cpus`).

    The rule:

    1. The clients (load generator and prober) get the last CPU, the service every other one, so the
       generator's own work never competes with the service it measures (its CPU is watched, and a
       saturated generator is reported).
    2. Fewer than 2 CPUs (or a platform that cannot pin): nothing is pinned; both share what there is.
    3. ``restarts`` (a chaos run: replicas are killed and restart while the load is measured): nothing
       is pinned below `MIN_CPUS_TO_PIN_RESTARTS` CPUs. On 2 cores every replica would share one core,
       and a restarting replica (imports, weights) would starve the replica still serving, which says
       more about the pinning than about the topology.
    4. ``replicas`` more than the service's CPUs (a capacity check of N replicas): the service gets
       every CPU, and so do the clients; the check says it includes that contention. Every core is
       shared then anyway, and a generator kept to the last one is starved exactly when the replicas
       on it are busiest (the capacity search at 2 replicas on 2 cores took that for the generator's
       limit); spread over all of them, it can add worker processes (`harness.load.rate_workers`).

    On 1, 2, 4 and 16 cores (ids 0..n-1): unpinned; service (0,) and clients (1,) (restarts: unpinned);
    (0, 1, 2) and (3,); (0..14) and (15,). With more replicas than service cores, on 2 cores: (0, 1) both.
    """
    cpus = sorted(set(usable_cpus() if available is None else available))
    if len(cpus) < 2 or (restarts and len(cpus) < MIN_CPUS_TO_PIN_RESTARTS):
        return CpuPlan(service=None, generator=None)
    service, generator = tuple(cpus[:-1]), (cpus[-1],)
    if replicas is not None and replicas > len(service):
        service = generator = tuple(cpus)
    return CpuPlan(service=service, generator=generator)
