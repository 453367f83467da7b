"""The local deployment's controllers: rollouts (a Deployment controller), scaling, the autoscaler and
the control channel that lets other processes ask for them. Everything runs on the supervisor's loop.

`DeploymentController` holds the desired replica count and at most one rollout at a time. A rollout
request (`harness.platforms.local.rollout.RolloutRequest`) names a strategy and an overlay on the
current revision's spec (`harness.config.overlay_spec`: the service, its probes and grace period);
the overlay becomes a new revision and the strategy moves the traffic to it. ``status()`` is what the
state file shows under ``rollout``, ``autoscaler``, ``desired_replicas`` and ``network_faults`` (the
balancer's network faults, `harness.platforms.local.netcontrol`, whose operations the channel serves too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from harness.config import ServiceSpec, overlay_spec
from harness.errors import ConfigError, DeploymentError
from harness.platforms.local.autoscaler import Autoscaler
from harness.platforms.local.control import ControlServer
from harness.platforms.local.fleet import Fleet
from harness.platforms.local.netcontrol import NetworkFaultControl
from harness.platforms.local.replica import ReplicaSettings
from harness.platforms.local.rollout import Rollout, RolloutRequest
from harness.validation import validate_model

__all__ = ["DeploymentController"]

_log = logging.getLogger("harness.platforms.local")
_HISTORY = 20  # finished rollouts kept in the state file


class DeploymentController:
    """Rollouts, scaling and autoscaling of one local deployment (``spec`` is the deployed spec)."""

    def __init__(self, spec: ServiceSpec, fleet: Fleet, *, settings_for: Callable[[ServiceSpec], ReplicaSettings],
                 balancer_stats: Callable[[], Awaitable[dict]], token: str, on_change: Callable[[], None],
                 balancer_send: Callable[[dict], None] | None = None) -> None:
        self.spec = spec
        self.fleet = fleet
        self.desired = spec.replica_count
        self._settings_for = settings_for
        self._balancer_stats = balancer_stats
        self._on_change = on_change
        self.rollout: Rollout | None = None
        self._rollout_task: asyncio.Task | None = None
        self.history: list[dict[str, Any]] = []
        self.autoscaler: Autoscaler | None = None
        self._autoscaler_task: asyncio.Task | None = None
        self.network = NetworkFaultControl(balancer_send, fleet.events, lambda: [r.name for r in fleet.replicas], on_change)
        self.control = ControlServer(token, {"status": self._op_status, "rollout": self._op_rollout, "scale": self._op_scale,
                                             **self.network.ops})

    async def start(self) -> None:
        """Open the control channel and start the autoscaler (when the spec has one)."""
        await self.control.start()
        if self.spec.autoscaling is not None:
            self.autoscaler = Autoscaler(
                self.spec.autoscaling, self.fleet, self.fleet.events, cpu_request_cores=self.spec.cpu_request_cores,
                balancer_stats=self._balancer_stats, busy=lambda: self.busy, desired=lambda: self.desired,
                set_desired=self._set_desired,
            )
            self._autoscaler_task = asyncio.ensure_future(self.autoscaler.run())

    async def stop(self) -> None:
        """Stop the autoscaler and any rollout (teardown), and close the control channel."""
        for task in (self._autoscaler_task, self._rollout_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.network.stop()
        await self.control.close()

    @property
    def busy(self) -> bool:
        """True while a rollout runs."""
        return self._rollout_task is not None and not self._rollout_task.done()

    def _set_desired(self, count: int) -> None:
        self.desired = count
        self._on_change()

    def status(self) -> dict[str, Any]:
        """Return the controllers' view for the state file."""
        return {
            "control": {"port": self.control.port}, "revision": self.fleet.current, "desired_replicas": self.desired,
            "traffic": {str(k): v for k, v in self.fleet.weights.items()},
            "rollout": dict(self.rollout.status) if self.rollout is not None else None,
            "rollouts": list(self.history),
            "autoscaler": dict(self.autoscaler.status) if self.autoscaler is not None else None,
            "network_faults": self.network.status(),
        }

    # ----- operations -------------------------------------------------------------------------------

    async def start_rollout(self, request: RolloutRequest) -> asyncio.Task:
        """Start a rollout; return its task (its result is the final status). Raises ConfigError for a bad
        overlay, DeploymentError while another rollout runs or replicas of several revisions serve."""
        if self.busy:
            raise DeploymentError(f"a {self.rollout.request.strategy} rollout of revision {self.rollout.new} is in progress")
        revisions = {r.revision for r in self.fleet.live()}
        if revisions - {self.fleet.current}:
            raise DeploymentError(f"replicas of revisions {sorted(revisions)} are running; a rollout starts from one")
        current = self.fleet.revisions[self.fleet.current]
        spec = overlay_spec(current.spec, request.overlay)
        revision = self.fleet.add_revision(spec, self._settings_for(spec), request.overlay)
        deadline_s = request.progress_deadline_s or self.spec.progress_deadline_s
        self.rollout = Rollout(self.fleet, request, new_revision=revision.number, desired=self.desired,
                               bounds=self.spec.strategy.bounds(self.desired, self.spec.topology), deadline_s=deadline_s,
                               balancer_stats=self._balancer_stats)
        self._rollout_task = asyncio.ensure_future(self._run(self.rollout))
        self._on_change()
        return self._rollout_task

    async def _run(self, rollout: Rollout) -> dict[str, Any]:
        try:
            status = await rollout.run()
        except asyncio.CancelledError:
            rollout.status.update(phase="Aborted", why="the deployment was torn down")
            raise
        except Exception as exc:  # a controller bug: recorded as the rollout's failure, never silent
            _log.exception("local platform: rollout failed")
            rollout.status.update(phase="Failed", why=f"{type(exc).__name__}: {exc}")
            status = rollout.status
        finally:
            self.history = (self.history + [dict(rollout.status)])[-_HISTORY:]
            self._on_change()
        return status

    async def scale(self, replicas: int, reason: str) -> list[str]:
        """Set the desired replica count (of the current revision); return the replicas added or removed."""
        if self.busy:
            raise DeploymentError("a rollout is in progress: scale after it")
        self.desired = replicas
        return await self.fleet.scale(self.fleet.current, replicas, reason)

    async def _op_status(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def _op_rollout(self, request: dict[str, Any]) -> dict[str, Any]:
        parsed = validate_model(RolloutRequest, request)
        await self.start_rollout(parsed)
        return {"rollout": dict(self.rollout.status)}

    async def _op_scale(self, request: dict[str, Any]) -> dict[str, Any]:
        replicas = request.get("replicas")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
            raise ConfigError("replicas", replicas, "a whole number from 1 to 64")
        if self.spec.topology != "multi-active":
            raise ConfigError("replicas", replicas, f"topology {self.spec.topology!r} has a fixed replica count")
        if self.autoscaler is not None:
            raise ConfigError("replicas", replicas, "the autoscaler owns the replica count of this deployment")
        changed = await self.scale(replicas, "scaled by request")
        return {"replicas": replicas, "changed": changed}
