"""The local platform's HorizontalPodAutoscaler: a loop on the supervisor that resizes the deployment.

Every ``syncPeriodSeconds`` it reads one metric per Ready replica over the last period, requests
per second (the balancer's per-replica request counters: what arrived, so a saturated replica does
not hide its load behind the answers it could give) or CPU utilisation (the process group's CPU
time per second, as a share of ``requests.cpu``), runs the HPA algorithm (`harness.platforms.local.hpa`)
and, when the size changes, records ``SuccessfulRescale`` ("New size: N; reason: ...", with the
metric, the target and the usage ratio) and lets the fleet add or remove replicas of the current
revision (``ScalingReplicaSet``). A replica that has not been Ready for a whole period has no metric
yet (the HPA's "ignored" or "missing" pods). While a rollout runs, the autoscaler waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from harness.policies import Autoscaling
from harness.platforms import base as ev
from harness.platforms.local.eventlog import EventLog
from harness.platforms.local.fleet import Fleet
from harness.platforms.local.hpa import Stabilizer, bounded, desired_replicas

__all__ = ["Autoscaler"]

_log = logging.getLogger("harness.platforms.local")


def _cpu_seconds(pid: int | None) -> float | None:
    """Return the CPU seconds used so far by ``pid`` and its children (None when it is gone)."""
    import psutil

    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                continue
        return total
    except psutil.Error:
        return None


class Autoscaler:
    """Runs the HPA loop for ``fleet`` until cancelled; ``status`` is what the state file shows."""

    def __init__(self, policy: Autoscaling, fleet: Fleet, events: EventLog, *, cpu_request_cores: float | None,
                 balancer_stats: Callable[[], Awaitable[dict]], busy: Callable[[], bool],
                 desired: Callable[[], int], set_desired: Callable[[int], None]) -> None:
        self.policy = policy
        self.fleet = fleet
        self.events = events
        self.cpu_request_cores = cpu_request_cores
        self._balancer_stats = balancer_stats
        self._busy = busy
        self._desired = desired
        self._set_desired = set_desired
        self.stabilizer = Stabilizer(policy.scale_up_stabilization_s, policy.scale_down_stabilization_s)
        self._previous: dict[str, tuple[float, float]] = {}  # replica -> (time, counter) at the last sync
        self.status: dict[str, Any] = {"metric": policy.metric, "target": policy.target, "min_replicas": policy.min_replicas,
                                       "max_replicas": policy.max_replicas, "value": None, "desired": None}

    async def run(self) -> None:
        """Sync every period until cancelled; a failed sync is logged and the loop goes on."""
        while True:
            await asyncio.sleep(self.policy.sync_period_s)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a metric read failing must not stop the autoscaler
                _log.warning("local platform: autoscaler sync failed: %s", exc)

    async def _counters(self) -> dict[str, float]:
        """Return each live replica's counter now: requests sent to it (rps) or CPU seconds (cpu)."""
        if self.policy.metric == "rps":
            stats = await self._balancer_stats()
            return {b["name"]: float(b.get("requests", 0)) for b in stats.get("backends", [])}
        loop = asyncio.get_running_loop()
        pids = {r.name: (r.proc.pid if r.proc is not None else None) for r in self.fleet.live()}
        values = {name: await loop.run_in_executor(None, _cpu_seconds, pid) for name, pid in pids.items()}
        return {name: value for name, value in values.items() if value is not None}

    def _metric(self, rate_per_s: float) -> float:
        if self.policy.metric == "rps":
            return rate_per_s
        assert self.cpu_request_cores  # validated: a CPU target needs a request
        return rate_per_s / self.cpu_request_cores * 100.0

    async def sync(self) -> int | None:
        """Run one pass of the algorithm; return the new size when it changed, else None."""
        counters = await self._counters()
        now = time.monotonic()
        previous, self._previous = self._previous, {name: (now, value) for name, value in counters.items()}
        if self._busy():
            self.status["waiting"] = "a rollout is in progress"
            return None
        self.status.pop("waiting", None)
        live = self.fleet.live()
        metrics: dict[str, float] = {}
        ignored: set[str] = set()
        missing: set[str] = set()
        for replica in live:
            if not replica.ready:
                ignored.add(replica.name)
            elif replica.name in previous and replica.name in counters and now > previous[replica.name][0]:
                then, before = previous[replica.name]
                metrics[replica.name] = self._metric(max(0.0, counters[replica.name] - before) / (now - then))
            else:
                missing.add(replica.name)
        current = self._desired()
        if not metrics:
            return None
        raw, ratio = desired_replicas(current, metrics, self.policy.target, ready_count=len(metrics), ignored=ignored,
                                      missing=missing, tolerance=self.policy.tolerance)
        stable = self.stabilizer.stabilize(raw, current, now)
        size, condition = bounded(stable, current, min_replicas=self.policy.min_replicas,
                                  max_replicas=self.policy.max_replicas,
                                  scale_up_limit=self.stabilizer.scale_up_limit(current, now))
        value = sum(metrics.values()) / len(metrics)
        self.status.update(value=round(value, 3), usage_ratio=round(ratio, 3), recommended=raw, desired=size,
                           condition=condition, replicas=current)
        if size == current:
            return None
        unit = "requests/s per replica" if self.policy.metric == "rps" else "% CPU of the request"
        reason = f"{self.policy.metric} {'above' if size > current else 'below'} target"
        self.events.emit(ev.SUCCESSFUL_RESCALE, None, "SuccessfulRescale", f"New size: {size}; reason: {reason} "
                         f"({value:.1f} vs {self.policy.target:g} {unit})", from_replicas=current, replicas=size,
                         metric=self.policy.metric, value=round(value, 3), target=self.policy.target,
                         usage_ratio=round(ratio, 3), recommended=raw, condition=condition)
        self.stabilizer.record_scale(current, size, now)
        self._set_desired(size)
        await self.fleet.scale(self.fleet.current, size, f"autoscaler: {reason}")
        return size
