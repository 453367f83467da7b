"""The local platform's deployment: replicas, the front balancer, cgroups, events and the state file.

A supervisor thread runs an asyncio loop with one `Replica.run` task per replica. The replicas and
the balancer are forked from that thread, so PR_SET_PDEATHSIG kills them if the supervisor (or the
whole harness) dies. Every change rewrites the state file and tells the balancer which replicas are
Ready, over its stdin. The replicas live in a `Fleet` (by revision); a `DeploymentController` runs
rollouts, scaling and the autoscaler, reachable from other processes over the control channel
(`harness.platforms.local.control`). ``close()`` tears everything down and always ends with a forced sweep. A
lease notes the deployment while it lives, so that what a killed run leaves (its cgroups, its state
file) is removed as the next deployment starts or by ``harness cleanup`` (`harness.platforms.local.cleanup`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.config import ENV_FAULT_TOKEN, ServiceSpec
from harness.errors import DeploymentError
from harness.extras import require_extra
from harness.platforms import base as ev
from harness.platforms.base import Event, ReplicaStatus, read_events
from harness.platforms.local.cgroups import CgroupSet, ReplicaCgroup
from harness.platforms.local.cleanup import sweep_stale
from harness.platforms.local.commands import log_tail as _tail, replica_names, service_command
from harness.platforms.local.controller import DeploymentController
from harness.platforms.local.eventlog import EventLog, write_state_file
from harness.platforms.local.fleet import Fleet, Revision
from harness.platforms.local.frontend import Frontend
from harness.platforms.local.leases import remove_lease, write_lease
from harness.platforms.local.replica import Replica, ReplicaSettings
from harness.platforms.local.rollout import RolloutRequest
from harness.processes import stop
from harness.validation import validate_model

__all__ = ["LocalDeployment", "service_command", "replica_names"]

_log = logging.getLogger("harness.platforms.local")
_START_TIMEOUT_S = 60.0
_warned: set[str] = set()  # "say so once": each fallback warning is logged once per process


class LocalDeployment:
    """A service spec deployed on this machine (see `harness.platforms.deploy`)."""

    platform = "local"

    def __init__(self, spec: ServiceSpec, *, workdir: Path, cpus: Sequence[int] | None = None,
                 state_path: Path | None = None, fault_token: str | None = None,
                 command: Sequence[str] | Callable[[int], Sequence[str]] | None = None,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 use_cgroups: bool = True, python: str = sys.executable) -> None:
        self.spec = spec
        self.workdir = Path(workdir).resolve()
        self.state_path = Path(state_path).resolve() if state_path else self.workdir / "state.json"
        self.events_path = self.workdir / "events.jsonl"
        self.log_dir = self.workdir / "logs"
        self.fault_token = fault_token or spec.service.fault_token or secrets.token_urlsafe(24)
        self.endpoint = ""
        self.cpus = list(cpus) if cpus else None
        self._command = command
        self._extra_args = list(extra_args)
        self._python = python
        self._env = dict(env or {})
        self._use_cgroups = use_cgroups
        self._fleet: Fleet | None = None
        self._first_cgroups: dict[str, ReplicaCgroup | None] = {}
        self._controller: DeploymentController | None = None
        self._frontend = Frontend(spec, self.log_dir, python)
        self._cgroups: CgroupSet | None = None
        self._lease: Path | None = None
        self._events: EventLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._snapshot: list[ReplicaStatus] = []
        self._closed = False
        self.memory_enforcement = "none"
        self.cpu_enforcement = "none"

    # ----- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "LocalDeployment":
        """Create cgroups, start the balancer and every replica; return self. Raises DeploymentError.

        Does not wait for readiness (see `wait_ready`). On failure everything started is torn down.
        """
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self._command is None and self.spec.target is None and self._python == sys.executable:
            # the reference service's packages (another interpreter has its own; a user's server its own)
            require_extra("service", "deploying the reference service")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        for problem in sweep_stale().problems:  # what a killed run left: cgroups, its state file
            _log.warning("local platform: %s", problem)
        self._lease = write_lease(self.state_path, self.workdir)  # removed at teardown; left if killed
        self._events = EventLog(self.events_path)
        resources = self.spec.resources
        external = self.spec.target_kind == "endpoint"  # no process of ours to limit
        self._cgroups = CgroupSet(self.spec.name, None if external else resources.memory_limit_bytes,
                                  None if external else resources.cpu_limit_cores,
                                  enabled=self._use_cgroups and not external)
        self.memory_enforcement = self._cgroups.memory_enforcement
        self.cpu_enforcement = self._cgroups.cpu_enforcement
        self._report_fallbacks()
        atexit.register(self.close)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"harness-supervisor-{self.spec.name}",
                                        daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start_async(), self._loop)
        future.result(timeout=_START_TIMEOUT_S)

    def _report_fallbacks(self) -> None:
        assert self._cgroups is not None and self._events is not None
        for warning in self._cgroups.warnings:
            if warning not in _warned:
                _warned.add(warning)
                _log.warning("local platform: %s", warning)
            self._events.emit(ev.ENFORCEMENT_FALLBACK, None, "EnforcementFallback", warning,
                              memory_enforcement=self.memory_enforcement, cpu_enforcement=self.cpu_enforcement)

    def _replica_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._env)
        env[ENV_FAULT_TOKEN] = self.fault_token
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _command_for(self, spec: ServiceSpec) -> Callable[[int], list[str]]:
        """Return port -> argv for a revision's spec (a user's command is the same for every revision)."""
        def build(port: int) -> list[str]:
            if self._command is None and spec.target is not None and spec.target.command is not None:
                return spec.target.argv(port) + self._extra_args
            if self._command is None:
                return service_command(spec, port, python=self._python, extra_args=self._extra_args)
            if callable(self._command):
                return list(self._command(port))
            return [part.replace("{port}", str(port)) for part in self._command] + self._extra_args

        return build

    def _settings_for(self, spec: ServiceSpec) -> ReplicaSettings:
        assert self._cgroups is not None
        return ReplicaSettings(self._command_for(spec), self._replica_env(), self.log_dir,
                               self._cgroups.rlimit_as_bytes(), self.cpus, spec.target)

    def _make_cgroup(self, name: str) -> ReplicaCgroup | None:
        """Return replica ``name``'s cgroup (made at start for the first replicas), None where none is used."""
        assert self._cgroups is not None
        if name in self._first_cgroups:
            return self._first_cgroups.pop(name)
        before = self._cgroups.memory_enforcement
        cgroup = self._cgroups.create_replica(name)
        if self._cgroups.memory_enforcement != before:  # a limit refused later: said in events and the state
            self.memory_enforcement = self._cgroups.memory_enforcement
            self.cpu_enforcement = self._cgroups.cpu_enforcement
            self._report_fallbacks()
            return None
        return cgroup

    async def _start_async(self) -> None:
        self.endpoint = await self._frontend.start()
        assert self._cgroups is not None and self._events is not None
        # a later limit failure can still downgrade enforcement: re-read it after the first cgroups exist
        names = replica_names(self.spec)
        self._first_cgroups = {name: self._cgroups.create_replica(name) for name in names}
        if self._cgroups.memory_enforcement != self.memory_enforcement:
            self.memory_enforcement = self._cgroups.memory_enforcement
            self.cpu_enforcement = self._cgroups.cpu_enforcement
            self._first_cgroups = {name: None for name in names}
            self._report_fallbacks()
        revision = Revision(1, self.spec, self._settings_for(self.spec), {})
        self._fleet = Fleet(self.spec.name, self._events, self._on_change, self._make_cgroup,
                            self._cgroups.remove_replica, revision)
        self._controller = DeploymentController(self.spec, self._fleet, settings_for=self._settings_for,
                                                balancer_stats=self._balancer_stats_async, token=self.fault_token,
                                                on_change=self._on_change, balancer_send=self._frontend.send)
        await self._controller.start()
        for _ in range(self.spec.replica_count):
            self._fleet.start_replica(1)
        self._on_change()

    async def _balancer_stats_async(self) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, self.balancer_stats)

    @property
    def _replicas(self) -> list[Replica]:
        return self._fleet.replicas if self._fleet is not None else []

    def _on_change(self) -> None:
        """Called on the loop thread whenever a replica changes: state file, balancer, waiters."""
        snapshot = [r.status() for r in self._replicas]
        self._write_state(snapshot)  # before waiters wake: what wait_ready saw, the file already says
        with self._changed:
            self._snapshot = snapshot
            self._changed.notify_all()
        self._frontend.update(snapshot, self._fleet.weights if self._fleet is not None else {})

    def _write_state(self, snapshot: list[ReplicaStatus]) -> None:
        write_state_file(self.state_path, {
            "name": self.spec.name, "platform": "local", "topology": self.spec.topology, "target": self.spec.target_kind,
            "endpoint": self.endpoint, "fault_token": self.fault_token, "events_path": str(self.events_path),
            "memory_enforcement": self.memory_enforcement, "cpu_enforcement": self.cpu_enforcement,
            "updated_s": time.time(), "harness_pid": os.getpid(), "workdir": str(self.workdir),
            "balancer": self._frontend.describe(),
            "rate_limit": self.spec.rate_limit.model_dump() if self.spec.rate_limit else None,
            # what a team's server is asked (harness.protocolspec): steady-state probes speak it too
            "protocol": target.protocol.model_dump(mode="json") if (target := self.spec.target) and target.protocol else None,
            **(self._controller.status() if self._controller is not None else {}),
            "replicas": [s.to_dict() for s in snapshot],
        })

    # ----- queries and actions -------------------------------------------------------------------

    def replicas(self) -> list[ReplicaStatus]:
        """Return every replica's status now, in order."""
        with self._changed:
            return list(self._snapshot)

    def replica(self, name: str) -> ReplicaStatus:
        """Return one replica's status; raise DeploymentError naming the known replicas."""
        for status in self.replicas():
            if status.name == name:
                return status
        raise DeploymentError(f"no replica {name!r} (replicas: {', '.join(s.name for s in self.replicas())})")

    @property
    def desired_replicas(self) -> int:
        """The replica count the deployment aims for now (the spec's, until scaled or autoscaled)."""
        return self._controller.desired if self._controller is not None else self.spec.replica_count

    def wait_ready(self, count: int | None = None, timeout_s: float = 120.0) -> None:
        """Return once ``count`` replicas (default: the desired count) are Ready; raise DeploymentError on timeout."""
        wanted = self.desired_replicas if count is None else count
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while sum(s.ready for s in self._snapshot) < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._changed.wait(min(remaining, 0.5))
            else:
                return
        lines = [f"  {s.name}: state={s.state} ready={s.ready} restarts={s.restarts} "
                 f"last_exit_code={s.last_exit_code} last_reason={s.last_reason}" for s in self.replicas()]
        logs = "".join(_tail(self.log_dir / f"{s.name}.log") for s in self.replicas() if not s.ready)
        why = "the deployment was closed" if self._closed else f"timed out after {timeout_s:g} s"
        raise DeploymentError(f"{wanted} Ready replica(s) wanted, {why}:\n" + "\n".join(lines) + logs)

    def kill_replica(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to replica ``name``'s process (as a chaos tool would); return the pid signalled."""
        status = self.replica(name)
        if status.pid is None:
            raise DeploymentError(f"replica {name!r} has no running process (state {status.state})")
        try:
            os.kill(status.pid, sig)
        except ProcessLookupError:
            raise DeploymentError(f"replica {name!r} (pid {status.pid}) exited before it could be signalled") from None
        return status.pid

    def events(self) -> list[Event]:
        """Return the events recorded so far, oldest first (what events.jsonl holds)."""
        return self._events.snapshot() if self._events else read_events(self.events_path)

    def event_count(self) -> int:
        """Return how many events were recorded so far (a bookmark for `wait_event`)."""
        return len(self._events.snapshot()) if self._events else 0

    def wait_event(self, type_: str, replica: str | None = None, *, since: int = 0, timeout_s: float = 60.0,
                   **fields: object) -> Event:
        """Return the first event of ``type_`` (for ``replica``, with ``fields`` in its extras) at index ``since`` or later.

        Raises DeploymentError naming what was awaited when none comes within ``timeout_s``.
        """
        def matches(event: Event) -> bool:
            return (event.type == type_ and (replica is None or event.replica == replica)
                    and all(event.extra.get(k) == v for k, v in fields.items()))

        found = self._events.wait_for(matches, since, timeout_s) if self._events else None
        if found is None:
            recent = "\n".join(f"  {e.type} {e.replica} {e.reason}: {e.message}" for e in self.events()[-8:])
            raise DeploymentError(f"no {type_} event for {replica or 'any replica'} within {timeout_s:g} s; "
                                  f"latest events:\n{recent}")
        return found

    def roll_out(self, overlay: Mapping | None = None, strategy: str = "rolling", *, timeout_s: float = 300.0,
                 **settings: object) -> dict:
        """Roll out ``overlay`` (on the current spec) with ``strategy``; return the rollout's final status.

        ``settings`` are `harness.platforms.local.rollout.RolloutRequest` fields (canary_weight, ...).
        Raises ConfigError for a bad request, DeploymentError when another rollout runs or this one
        does not end within ``timeout_s``. A rollout that fails is not an error: its status says so.
        """
        request = validate_model(RolloutRequest, {"strategy": strategy, "overlay": dict(overlay or {}), **settings})
        task = self._call(self._controller.start_rollout(request))
        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: task.add_done_callback(lambda _t: done.set()))
        if not done.wait(timeout_s):
            raise DeploymentError(f"the {strategy} rollout did not end within {timeout_s:g} s")
        return task.result()

    def scale(self, replicas: int) -> list[str]:
        """Set the desired replica count (multi-active without autoscaling); return the replicas added or removed."""
        return self._call(self._controller._op_scale({"replicas": replicas}))["changed"]

    def _call(self, coroutine):
        """Run ``coroutine`` on the supervisor's loop; return its result (its exception is raised here)."""
        if self._loop is None or self._controller is None or self._closed:
            coroutine.close()
            raise DeploymentError("the deployment is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def balancer_stats(self) -> dict:
        """Return the balancer's counters (requests per replica, no_ready, retries, rate limit) from /_balancer/stats."""
        return self._frontend.stats()

    # ----- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Tear everything down: replicas (SIGTERM, SIGKILL after the grace period), balancer, cgroups."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        with self._changed:
            self._changed.notify_all()
        try:
            if self._loop is not None and self._loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
                future.result(timeout=self.spec.termination_grace_period_s + 30)
        except BaseException as exc:  # a second Ctrl-C or a stuck loop: the forced sweep below still runs
            _log.error("local platform: orderly teardown failed (%s); forcing", exc or type(exc).__name__)
        finally:
            self._force_cleanup()

    async def _shutdown(self) -> None:
        if self._controller is not None:
            await self._controller.stop()
        if self._fleet is not None:
            await asyncio.gather(*self._fleet.request_close_all(), return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._frontend.stop)

    def _force_cleanup(self) -> None:
        for replica in self._replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                stop(replica.proc, grace_s=0)
        self._frontend.kill()
        if self._loop is not None:
            if self._controller is not None and self._loop.is_running():  # already closed after an orderly teardown
                self._loop.call_soon_threadsafe(self._controller.control.close_now)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
            if not self._loop.is_running():
                self._loop.close()
        problems = self._cgroups.remove() if self._cgroups is not None else []
        for problem in problems:
            _log.error("local platform: %s", problem)
        snapshot = [r.status() for r in self._replicas]
        with self._changed:
            self._snapshot = snapshot
            self._changed.notify_all()
        if self._events is not None:
            self._write_state(snapshot)
            self._events.emit(ev.DELETED, None, "Deleted", f"deployment {self.spec.name} torn down",
                              problems=problems)
            self._events.close()
        remove_lease(self._lease)

    def __enter__(self) -> "LocalDeployment":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalDeployment({self.spec.name!r}, endpoint={self.endpoint!r}, replicas={self.desired_replicas})"
