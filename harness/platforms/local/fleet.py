"""The replicas of a local deployment, by revision: what a Deployment's ReplicaSets are in Kubernetes.

Every coroutine and method here runs on the supervisor's event loop. A *revision* is one pod
template: a spec and how to start it; revision 1 is the deployed spec and each rollout adds one.
`Fleet.start_replica` adds a replica of a revision (its own cgroup, named ``<name>-<n>`` with ``n``
counting up), `Fleet.stop_replica` removes one gracefully: un-routed first, then, once the balancer
has surely heard of it (`DEREGISTER_S`: its update travels over a pipe), SIGTERM with the grace
period; so a replica removed by a scale-down or a rollout drains what it holds and gets nothing new.
`Fleet.scale` sets the count of a revision and records a ``ScalingReplicaSet`` event. The traffic
split between revisions (``weights``) is the balancer's (`harness.platforms.local.routing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from harness.config import ServiceSpec
from harness.platforms import base as ev
from harness.platforms.local.cgroups import ReplicaCgroup
from harness.platforms.local.eventlog import EventLog
from harness.platforms.local.external import ExternalReplica
from harness.platforms.local.replica import Replica, ReplicaSettings

__all__ = ["DEREGISTER_S", "Revision", "Fleet"]

# between un-routing a replica and SIGTERM: the balancer reads its backends from a pipe, so a request it
# routed a moment before the update must still meet a replica that serves (a Kubernetes preStop sleep)
DEREGISTER_S = 0.5


@dataclass(frozen=True)
class Revision:
    """One pod template: its number, its spec, how its replicas start, and what changed (the rollout's overlay)."""

    number: int
    spec: ServiceSpec
    settings: ReplicaSettings
    overlay: dict


class Fleet:
    """The live replicas of a deployment and its revisions; ``on_change`` is called after every change."""

    def __init__(self, name: str, events: EventLog, on_change: Callable[[], None],
                 make_cgroup: Callable[[str], ReplicaCgroup | None], drop_cgroup: Callable[[ReplicaCgroup], list[str]],
                 first: Revision) -> None:
        self.name = name
        self.events = events
        self.on_change = on_change
        self._make_cgroup = make_cgroup
        self._drop_cgroup = drop_cgroup
        self.revisions: dict[int, Revision] = {first.number: first}
        self.current = first.number  # the revision new replicas get (the Deployment's template)
        self.replicas: list[Replica] = []
        self.weights: dict[int, int] = {}  # revision -> percent of the traffic; empty: no split
        self._tasks: dict[Replica, asyncio.Task] = {}
        self._stopping: set[asyncio.Task] = set()
        self._index = 0
        self.changed = asyncio.Event()  # set on every change; waiters clear it

    # ----- revisions and views ----------------------------------------------------------------------

    def add_revision(self, spec: ServiceSpec, settings: ReplicaSettings, overlay: dict) -> Revision:
        """Return a new revision (number: one above the highest so far); it is not current until a rollout says so."""
        revision = Revision(max(self.revisions) + 1, spec, settings, dict(overlay))
        self.revisions[revision.number] = revision
        return revision

    def live(self, revision: int | None = None) -> list[Replica]:
        """Return the replicas not being removed (of ``revision`` when given), in order."""
        return [r for r in self.replicas if not r.draining and (revision is None or r.revision == revision)]

    def ready(self, revision: int | None = None) -> list[Replica]:
        """Return the Ready replicas not being removed (of ``revision`` when given)."""
        return [r for r in self.live(revision) if r.ready]

    def notify(self) -> None:
        """Record a change: the state file and balancer are updated, waiters wake."""
        self.on_change()
        self.changed.set()

    async def wait_change(self, timeout_s: float) -> None:
        """Return at the next change, or after ``timeout_s``."""
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout_s)
        except TimeoutError:
            pass

    # ----- replicas ---------------------------------------------------------------------------------

    def start_replica(self, revision: int) -> Replica:
        """Add and start one replica of ``revision``; return it (it becomes Ready through its probes)."""
        rev = self.revisions[revision]
        name = f"{self.name}-{self._index}"
        self._index += 1
        kind = ExternalReplica if rev.spec.target_kind == "endpoint" else Replica  # an endpoint: routed, never run
        replica = kind(name, rev.spec, rev.settings, self._make_cgroup(name), self.events, self.notify, revision)
        self.replicas.append(replica)
        self._tasks[replica] = asyncio.ensure_future(replica.run())
        self.notify()
        return replica

    async def stop_replica(self, replica: Replica, reason: str) -> None:
        """Remove ``replica`` gracefully: un-route, wait `DEREGISTER_S`, SIGTERM (SIGKILL after the grace period)."""
        if not replica.draining:
            replica.begin_drain(reason)
            self.notify()
        await asyncio.sleep(DEREGISTER_S)
        replica.request_close(reason)
        task = self._tasks.pop(replica, None)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if replica.cgroup is not None:
            for problem in self._drop_cgroup(replica.cgroup):
                self.events.emit(ev.ENFORCEMENT_FALLBACK, replica.name, "CgroupLeft", problem)
        if replica in self.replicas:
            self.replicas.remove(replica)
        self.notify()

    def stop_in_background(self, replica: Replica, reason: str) -> asyncio.Task:
        """Start removing ``replica`` (un-routed at once); return the task (awaited by `settle`)."""
        replica.begin_drain(reason)
        self.notify()
        task = asyncio.ensure_future(self.stop_replica(replica, reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    async def settle(self) -> None:
        """Return once every removal under way has finished."""
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    async def scale(self, revision: int, count: int, reason: str) -> list[str]:
        """Set the number of live replicas of ``revision`` to ``count``; return the names added or removed.

        Removes not-Ready replicas first, then the newest (as a ReplicaSet picks pods to delete), and
        records a ``ScalingReplicaSet`` event.
        """
        live = self.live(revision)
        if count == len(live):
            return []
        if count > len(live):
            changed = [self.start_replica(revision).name for _ in range(count - len(live))]
        else:
            ranked = sorted(live, key=lambda r: (r.ready, self.replicas.index(r)))
            victims = [r for r in ranked if not r.ready] + [r for r in reversed(ranked) if r.ready]
            victims = victims[: len(live) - count]
            for replica in victims:
                self.stop_in_background(replica, "scale-down")
            changed = [r.name for r in victims]
        direction = "up" if count > len(live) else "down"
        self.events.emit(ev.SCALING_REPLICA_SET, None, "ScalingReplicaSet",
                         f"Scaled {direction} revision {revision} from {len(live)} to {count} ({reason})",
                         revision=revision, replicas=count, from_replicas=len(live), direction=direction,
                         names=changed, why=reason)
        return changed

    def set_weights(self, weights: dict[int, int], reason: str) -> None:
        """Split the traffic between revisions (``{}``: no split) and record a ``TrafficShifted`` event."""
        self.weights = {int(k): int(v) for k, v in weights.items()}
        split = ", ".join(f"revision {k}: {v}%" for k, v in self.weights.items()) or "every Ready replica alike"
        self.events.emit(ev.TRAFFIC_SHIFTED, None, "TrafficShifted", f"traffic split {split} ({reason})",
                         weights={str(k): v for k, v in self.weights.items()}, why=reason)
        self.notify()

    def request_close_all(self) -> list[asyncio.Task]:
        """Ask every replica to stop (teardown); return the tasks to await."""
        for replica in self.replicas:
            replica.request_close()
        return list(self._tasks.values()) + list(self._stopping)
