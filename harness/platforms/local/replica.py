"""One replica's life on the local platform, as a kubelet runs a container with restartPolicy Always.

`Replica.run` is a coroutine on the supervisor's event loop: start the process (own port, own
cgroup), probe it (startup holds back liveness and readiness; liveness failure kills; readiness
failure un-routes), watch it exit (exit code, kernel OOM kill), and restart it with CrashLoopBackOff:
the first restart at once, then ``backoff_base_s`` doubling to ``backoff_cap_s``, reset after a run of
``reset_after_s``. Everything it does or sees becomes an event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.config import Probe, ServiceSpec, Target
from harness.errors import HarnessError
from harness.platforms import base as ev
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.cgroups import ReplicaCgroup
from harness.platforms.local.eventlog import EventLog
from harness.platforms.local.probes import ProbeTracker, http_probe
from harness.platforms.local.ports import free_port, port_is_free
from harness.processes import exit_code_of, signal_group, signal_name, spawn

__all__ = ["ReplicaSettings", "Replica", "backoff_delay_s"]

HOST = "127.0.0.1"
_log = logging.getLogger("harness.platforms.local")
_START_ERROR_EXIT = 128  # what a container runtime reports when the process could not be started


def backoff_delay_s(crashes: int, base_s: float, cap_s: float) -> float:
    """Return the wait before restart number ``crashes`` (0-based) of a crash loop: 0, base, 2*base, ... cap."""
    return 0.0 if crashes <= 0 else min(base_s * 2 ** (crashes - 1), cap_s)


@dataclass(frozen=True)
class ReplicaSettings:
    """What the supervisor gives every replica: how to build its command and where it runs."""

    build_command: Callable[[int], Sequence[str]]  # port -> argv
    env: Mapping[str, str]
    log_dir: Path
    rlimit_as: int | None
    cpus: Sequence[int] | None
    target: Target | None = None  # a user's server: its env ({port} substituted) and working directory


class Replica:
    """One replica; its public fields are read by the supervisor to write the state file."""

    def __init__(self, name: str, spec: ServiceSpec, settings: ReplicaSettings, cgroup: ReplicaCgroup | None,
                 events: EventLog, on_change: Callable[[], None], revision: int = 1) -> None:
        self.name = name
        self.spec = spec
        self.settings = settings
        self.revision = revision
        self.draining = False  # being removed (scale-down, rollout): never routed again
        self._close_reason = "teardown"
        self.cgroup = cgroup
        self.events = events
        self._on_change = on_change
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.state = "Pending"
        self.ready = False
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_reason: str | None = None
        self.started_s: float | None = None
        self._ever_ready = False
        self._down_since: float | None = None
        self._closing = asyncio.Event()

    def status(self) -> ReplicaStatus:
        pid = self.proc.pid if self.proc is not None else None
        url = f"http://{HOST}:{self.port}" if self.port else None
        return ReplicaStatus(self.name, pid, self.port, url, self.state, self.ready, self.restarts,
                             self.last_exit_code, self.last_reason, self.started_s,
                             self.cgroup.path if self.cgroup else None, self.revision)

    def request_close(self, reason: str = "teardown") -> None:
        """Ask the replica to stop (``reason``: teardown, scale-down, rollout): it terminates its process and ends ``run``."""
        self._close_reason = reason
        self._closing.set()

    def begin_drain(self, reason: str) -> None:
        """Un-route the replica for good (it is about to be stopped): not Ready, and no probe makes it Ready again."""
        self.draining = True
        self.state = "Terminating"
        self._set_ready(False, "Terminating", f"{self.name} is being removed ({reason})")

    async def run(self) -> None:
        """Run, watch and restart the replica until ``request_close``."""
        try:
            await self._supervise()
        except Exception:  # a supervisor bug must not pass silently; teardown still kills the process
            _log.exception("local platform: supervising %s failed", self.name)
            raise

    async def _supervise(self) -> None:
        self.events.emit(ev.SCHEDULED, self.name, "Scheduled", f"{self.name} placed on the local host",
                         cgroup=self.cgroup.path if self.cgroup else None, revision=self.revision)
        crashes = 0
        first = True
        while not self._closing.is_set():
            if not first:
                delay_s = backoff_delay_s(crashes, self.spec.restart.backoff_base_s, self.spec.restart.backoff_cap_s)
                crashes += 1
                if delay_s > 0:
                    self._update(state="CrashLoopBackOff")
                    self.events.emit(ev.BACK_OFF, self.name, "CrashLoopBackOff",
                                     f"Back-off {delay_s:g}s restarting failed container {self.name}",
                                     delay_s=delay_s, restarts=self.restarts)
                    if await self._closing_within(delay_s):
                        break
                self.restarts += 1
            first = False
            run_s = await self._run_once()
            if run_s >= self.spec.restart.reset_after_s:
                crashes = 0  # a stable run: the next crash restarts at once again
        self._update(state="Terminated", ready=False)

    async def _closing_within(self, delay_s: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), delay_s)
            return True
        except TimeoutError:
            return False

    def _update(self, **fields: object) -> None:
        for key, value in fields.items():
            setattr(self, key, value)
        self._on_change()

    def _set_ready(self, ready: bool, reason: str, message: str) -> None:
        if ready == self.ready or (ready and self.draining):
            return
        if ready:
            self.events.emit(ev.READY, self.name, reason, message)  # recorded before waiters see it
            self._update(ready=True)
            if self._down_since is not None:
                down_s = time.monotonic() - self._down_since
                self.events.emit(ev.RECOVERED, self.name, "Recovered",
                                 f"{self.name} Ready again after {down_s:.2f} s", down_s=round(down_s, 4))
            self._ever_ready, self._down_since = True, None
        else:
            self._update(ready=False)  # un-routed before anything is written
            self._record_not_ready(reason, message)

    def _record_not_ready(self, reason: str, message: str) -> None:
        self.events.emit(ev.NOT_READY, self.name, reason, message)
        if self._ever_ready and self._down_since is None:
            self._down_since = time.monotonic()

    def _choose_port(self) -> int:
        # keep the replica's port across restarts (as a pod keeps its IP) unless something else took it
        if self.port is not None and port_is_free(self.port, HOST):
            return self.port
        return free_port(HOST)

    async def _run_once(self) -> float:
        """Start the process and supervise it until it exits; return how long it ran."""
        port = self._choose_port()
        oom_before = self.cgroup.oom_kills() if self.cgroup else None
        failcnt_before = self.cgroup.memory_failcnt() if self.cgroup else None
        settings = self.settings
        try:
            target = settings.target
            env = {**settings.env, **target.environment(port)} if target is not None else settings.env
            proc = spawn(settings.build_command(port), log_path=settings.log_dir / f"{self.name}.log",
                         env=env, cwd=target.workdir if target is not None else None, procs_files=self.cgroup.procs_files() if self.cgroup else (),
                         rlimit_as=settings.rlimit_as, cpus=settings.cpus)
        except HarnessError as exc:  # the program cannot be started ("cannot start '...': ...")
            self._update(port=port, last_exit_code=_START_ERROR_EXIT, last_reason="StartError")
            self.events.emit(ev.EXITED, self.name, "StartError", str(exc), _START_ERROR_EXIT)
            return 0.0
        self._update(proc=proc, port=port, state="Running", started_s=time.time())
        started_event = self.events.emit(ev.STARTED, self.name, "Started",
                                         f"Started {self.name}: pid {proc.pid}, port {port}",
                                         pid=proc.pid, port=port, restarts=self.restarts)
        start_mono = started_event.mono_s  # probe delays count from the moment the event records
        exited = _watch_exit(proc)
        kill = asyncio.get_running_loop().create_future()
        started = asyncio.Event()
        probes = self._start_probes(port, start_mono, started, kill)
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait([exited, kill, closing], return_when=asyncio.FIRST_COMPLETED)
        killed_by = None
        if not exited.done():
            killed_by = kill.result() if kill.done() else self._close_reason
            for task in probes:
                task.cancel()
            self._update(state="Terminating")
            self._set_ready(False, "Terminating", f"{self.name} is being stopped ({killed_by})")
            grace_s = self.spec.termination_grace_period_s
            message = {"liveness": "failed liveness probe, will be restarted",
                       "startup": "failed startup probe, will be restarted",
                       "teardown": "stopping (deployment torn down)", "scale-down": "stopping (scaled down)",
                       "rollout": "stopping (replaced by a rollout)"}.get(killed_by, f"stopping ({killed_by})")
            self.events.emit(ev.KILLING, self.name, "Killing", f"Stopping container {self.name}: {message}",
                             killed_by=killed_by, grace_period_s=grace_s)
            await _terminate(proc, exited, grace_s, self.cgroup)
        closing.cancel()
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        returncode = await exited
        if killed_by is None:  # it ended by itself (a crash, a kill from outside): its workers end with it
            _kill_leftovers(proc, self.cgroup)
        run_s = time.monotonic() - start_mono
        exit_code = exit_code_of(returncode)
        oom = self._oom_killed(returncode, oom_before, failcnt_before)
        reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
        was_ready = self.ready
        self._update(proc=None, ready=False, last_exit_code=exit_code, last_reason=reason)  # un-route first
        if oom:
            limit = self.spec.resources.limits_memory
            self.events.emit(ev.OOM_KILLED, self.name, "OOMKilled",
                             f"{self.name} exceeded limits.memory={limit} and was killed by the kernel OOM killer",
                             exit_code, pid=proc.pid, memory_limit_bytes=self.spec.resources.memory_limit_bytes)
        signame = signal_name(-returncode) if returncode < 0 else None
        self.events.emit(ev.EXITED, self.name, reason,
                         f"pid {proc.pid} exited with code {exit_code}" + (f" ({signame})" if signame else ""),
                         exit_code, pid=proc.pid, signal=signame, killed_by=killed_by, run_s=round(run_s, 4))
        if was_ready:
            self._record_not_ready("ContainerExited", f"{self.name} is no longer running")
        return run_s

    def _oom_killed(self, returncode: int, oom_before: int | None, failcnt_before: int | None) -> bool:
        """Return whether the kernel OOM killer ended this run: its cgroup counted a kill, and it died of SIGKILL."""
        if self.cgroup is None or returncode != -signal.SIGKILL:
            return False
        oom_after = self.cgroup.oom_kills()
        if oom_after is not None and oom_before is not None:
            return oom_after > oom_before
        failcnt_after = self.cgroup.memory_failcnt()  # kernels without an oom_kill counter
        return failcnt_after is not None and failcnt_before is not None and failcnt_after > failcnt_before

    def _start_probes(self, port: int, start_mono: float, started: asyncio.Event,
                      kill: asyncio.Future) -> list[asyncio.Task]:
        probes = self.spec.probes
        if probes.startup is None:
            started.set()
        tasks = [asyncio.ensure_future(self._probe_loop(kind, probe, port, start_mono, started, kill))
                 for kind, probe in (("startup", probes.startup), ("liveness", probes.liveness),
                                     ("readiness", probes.readiness)) if probe is not None]
        if probes.readiness is None:
            tasks.append(asyncio.ensure_future(self._ready_when_started(started)))
        return tasks

    async def _ready_when_started(self, started: asyncio.Event) -> None:
        await started.wait()  # no readiness probe: Ready as soon as the container has started
        self._set_ready(True, "Started", f"{self.name} started (no readiness probe)")

    async def _probe_loop(self, kind: str, probe: Probe, port: int, start_mono: float, started: asyncio.Event,
                          kill: asyncio.Future) -> None:
        """Probe every periodSeconds after initialDelaySeconds (and, but for startup, after startup passed)."""
        if kind != "startup":
            await started.wait()
        delay_s = start_mono + probe.initial_delay_s - time.monotonic()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        tracker = ProbeTracker(probe, initial=(kind == "liveness"))
        next_at = time.monotonic()
        while True:
            result = await http_probe(HOST, port, probe.path, probe.timeout_s)
            if not result.ok:
                self.events.emit(ev.UNHEALTHY, self.name, "Unhealthy",
                                 f"{kind.capitalize()} probe failed: {result.detail}", probe=kind,
                                 failures=tracker.failures + 1, failure_threshold=probe.failure_threshold)
            flip = tracker.record(result.ok)
            if kind == "readiness" and flip is not None:
                self._set_ready(flip, "ReadinessProbeSucceeded" if flip else "ReadinessProbeFailed",
                                f"readiness probe {'passed' if flip else 'failed'} ({result.detail})")
            elif kind == "liveness" and flip is False:
                kill.done() or kill.set_result("liveness")
                return
            elif kind == "startup":
                if result.ok:
                    started.set()
                    return
                if tracker.failures >= probe.failure_threshold:
                    kill.done() or kill.set_result("startup")
                    return
            next_at += probe.period_s
            now = time.monotonic()
            if next_at < now:  # a probe that ran past its period: skip the missed ticks, as a ticker does
                next_at = now
            await asyncio.sleep(next_at - now)


def _watch_exit(proc: subprocess.Popen) -> asyncio.Future:
    """Return a future resolved with the Popen returncode when ``proc`` exits (pidfd, else polling)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        fd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):
        async def poll() -> None:
            while proc.poll() is None:
                await asyncio.sleep(0.05)
            future.done() or future.set_result(proc.returncode)

        future._poller = asyncio.ensure_future(poll())  # type: ignore[attr-defined]  # keep a reference
        return future

    def on_exit() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        returncode = proc.wait()  # the pidfd is readable only once the process has exited: no blocking
        future.done() or future.set_result(returncode)

    loop.add_reader(fd, on_exit)
    return future


async def _terminate(proc: subprocess.Popen, exited: asyncio.Future, grace_s: float,
                     cgroup: ReplicaCgroup | None) -> None:
    """SIGTERM the replica's process group; SIGKILL it (and its cgroup) if it outlives ``grace_s``.

    `harness.processes.stop`'s sequence, awaited on the supervisor's loop instead of blocking it.
    """
    signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), grace_s)
    except TimeoutError:
        signal_group(proc, signal.SIGKILL)
        await exited
    _kill_leftovers(proc, cgroup)


def _kill_leftovers(proc: subprocess.Popen, cgroup: ReplicaCgroup | None) -> None:
    """SIGKILL what the replica left behind, in its process group and its cgroup (a server's worker processes):
    a container's processes end with its main process, and none may keep the replica's port."""
    signal_group(proc, signal.SIGKILL)
    for pid in cgroup.pids() if cgroup else ():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
