"""An endpoint target's one replica: a server the harness does not run, behind the deployment's balancer.

As a Kubernetes Service with a manual Endpoints object (or an ExternalName) fronts something outside
the cluster, the local platform puts its front balancer before the URL of an ``endpoint`` target
(`harness.targetspec`), so load, prober, recovery, verdicts and the balancer's network faults work
as on any deployment. The replica has no process: never started, killed or restarted; it is routed
while its readiness probe passes (Ready at once without one), and its Ready / NotReady / Unhealthy /
Recovered events are recorded as a replica's are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from harness.config import Probe
from harness.platforms import base as ev
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.probes import ProbeTracker, http_probe
from harness.platforms.local.replica import Replica

__all__ = ["ExternalReplica"]


class ExternalReplica(Replica):
    """The endpoint of an endpoint target, as the fleet's replica (see the module docstring)."""

    def status(self) -> ReplicaStatus:
        target = self.spec.target
        return dataclasses.replace(super().status(), url=target.endpoint if target is not None else None)

    async def _supervise(self) -> None:
        target = self.spec.target
        assert target is not None and target.endpoint is not None
        host, port = target.endpoint_address()
        self.events.emit(ev.SCHEDULED, self.name, "External",
                         f"{self.name} is {target.endpoint}, not deployed by the harness", endpoint=target.endpoint)
        self._update(port=port, state="Running", started_s=time.time())
        probe = self.spec.probes.readiness
        if probe is None:
            self._set_ready(True, "Started", f"{self.name} routed (no readiness probe)")
            await self._closing.wait()
        else:
            task = asyncio.ensure_future(self._readiness(host, port, probe))
            await self._closing.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set_ready(False, "Terminating", f"{self.name} un-routed ({self._close_reason})")
        self._update(state="Terminated")

    async def _readiness(self, host: str, port: int, probe: Probe) -> None:
        """Probe readiness every periodSeconds after initialDelaySeconds; route or un-route on each flip."""
        await asyncio.sleep(probe.initial_delay_s)
        tracker = ProbeTracker(probe, initial=False)
        next_at = time.monotonic()
        while True:
            result = await http_probe(host, port, probe.path, probe.timeout_s)
            if not result.ok:
                self.events.emit(ev.UNHEALTHY, self.name, "Unhealthy", f"Readiness probe failed: {result.detail}",
                                 probe="readiness", failures=tracker.failures + 1,
                                 failure_threshold=probe.failure_threshold)
            flip = tracker.record(result.ok)
            if flip is not None:
                self._set_ready(flip, "ReadinessProbeSucceeded" if flip else "ReadinessProbeFailed",
                                f"readiness probe {'passed' if flip else 'failed'} ({result.detail})")
            next_at = max(next_at + probe.period_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
