"""What every platform exposes: the Deployment protocol, replica status, events, and their file formats.

A deployment records what it does and sees as Kubernetes would: one JSON object per line in an
append-only ``events.jsonl`` (wall-clock ``time_s`` and monotonic ``mono_s`` timestamps), and a JSON
state file rewritten atomically on every change. Both are plain files so that tools outside the
harness (Chaos Toolkit ``process`` activities, a user's scripts) can read them; the readers here are
what the harness itself uses.
"""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.errors import DeploymentError

__all__ = [
    "EVENT_TYPES",
    "SCHEDULED",
    "STARTED",
    "READY",
    "NOT_READY",
    "UNHEALTHY",
    "KILLING",
    "OOM_KILLED",
    "EXITED",
    "BACK_OFF",
    "RECOVERED",
    "ENFORCEMENT_FALLBACK",
    "DELETED",
    "SCALING_REPLICA_SET",
    "SUCCESSFUL_RESCALE",
    "ROLLOUT_STARTED",
    "TRAFFIC_SHIFTED",
    "ANALYSIS_COMPLETED",
    "ROLLOUT_COMPLETED",
    "ROLLOUT_ROLLED_BACK",
    "DRILL_EVENT_TYPES",
    "NETWORK_FAULT_INJECTED",
    "NETWORK_FAULT_CLEARED",
    "REPLICA_STATES",
    "EVENTS_FILE",
    "ReplicaStatus",
    "Event",
    "Deployment",
    "read_events",
    "copy_events",
    "read_state",
    "read_replica",
]

EVENTS_FILE = "events.jsonl"  # a deployment's events, and their copy beside a run's results

# Event types, in the vocabulary of Kubernetes events where one exists.
SCHEDULED = "Scheduled"  # a replica was placed (its cgroup created), once per replica
STARTED = "Started"  # a replica process started (every run, restarts included)
READY = "Ready"  # readiness passed successThreshold times: the balancer sends it traffic
NOT_READY = "NotReady"  # readiness failed failureThreshold times, or the process exited / is terminating
UNHEALTHY = "Unhealthy"  # one failed probe (extra "probe": liveness | readiness | startup)
KILLING = "Killing"  # the platform decided to stop a replica (probe failure, teardown)
OOM_KILLED = "OOMKilled"  # the kernel OOM killer killed the replica inside its memory cgroup
EXITED = "Exited"  # a replica process ended (exit_code: 128+signal for a signal, as containers report)
BACK_OFF = "BackOff"  # CrashLoopBackOff: the next restart waits "delay_s"
RECOVERED = "Recovered"  # a replica that had lost readiness is Ready again (extra "down_s")
ENFORCEMENT_FALLBACK = "EnforcementFallback"  # a resource limit could not use cgroups (replica null)
DELETED = "Deleted"  # teardown finished (replica null)
# Rollouts and autoscaling (replica null; extras carry "revision", "replicas", "weights", ...):
SCALING_REPLICA_SET = "ScalingReplicaSet"  # a revision's replica count changed ("replicas", "revision", "reason")
SUCCESSFUL_RESCALE = "SuccessfulRescale"  # the autoscaler chose a new size ("from_replicas", "replicas", "metric", ...)
ROLLOUT_STARTED = "RolloutStarted"  # a rollout of revision "revision" began ("strategy", "from_revision")
TRAFFIC_SHIFTED = "TrafficShifted"  # the balancer's split changed: "weights" maps revision -> percent
ANALYSIS_COMPLETED = "AnalysisCompleted"  # a canary's analysis ended ("passed", "failed_share", ...)
ROLLOUT_COMPLETED = "RolloutCompleted"  # every replica runs revision "revision"
ROLLOUT_ROLLED_BACK = "RolloutRolledBack"  # the rollout was abandoned; revision "revision" serves again ("why")

# Network faults in the front balancer (replica: the partitioned one, else null; extras "fault_id", "kind",
# the fault's fields; a clear's reason is Cleared, Expired, Replaced or TornDown):
NETWORK_FAULT_INJECTED = "NetworkFaultInjected"
NETWORK_FAULT_CLEARED = "NetworkFaultCleared"

DRILL_EVENT_TYPES = (
    SCALING_REPLICA_SET, SUCCESSFUL_RESCALE, ROLLOUT_STARTED, TRAFFIC_SHIFTED, ANALYSIS_COMPLETED, ROLLOUT_COMPLETED,
    ROLLOUT_ROLLED_BACK,
)
EVENT_TYPES = (
    SCHEDULED, STARTED, READY, NOT_READY, UNHEALTHY, KILLING, OOM_KILLED, EXITED, BACK_OFF, RECOVERED,
    ENFORCEMENT_FALLBACK, DELETED, *DRILL_EVENT_TYPES, NETWORK_FAULT_INJECTED, NETWORK_FAULT_CLEARED,
)

# Replica lifecycle states (the "state" field); readiness is the separate "ready" flag.
REPLICA_STATES = ("Pending", "Running", "Terminating", "CrashLoopBackOff", "Terminated")


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as the platform sees it now (a row of the state file)."""

    name: str
    pid: int | None
    port: int | None
    url: str | None
    state: str
    ready: bool
    restarts: int
    last_exit_code: int | None
    last_reason: str | None
    started_s: float | None = None  # wall-clock start of the current process
    cgroup: str | None = None
    revision: int = 1  # the deployment revision (pod template) the replica runs; a rollout adds one

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "pid": self.pid, "port": self.port, "url": self.url, "state": self.state,
            "ready": self.ready, "restarts": self.restarts, "last_exit_code": self.last_exit_code,
            "last_reason": self.last_reason, "started_s": self.started_s, "cgroup": self.cgroup,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReplicaStatus":
        return cls(
            name=data["name"], pid=data.get("pid"), port=data.get("port"), url=data.get("url"),
            state=data.get("state", "Pending"), ready=bool(data.get("ready")), restarts=int(data.get("restarts", 0)),
            last_exit_code=data.get("last_exit_code"), last_reason=data.get("last_reason"),
            started_s=data.get("started_s"), cgroup=data.get("cgroup"), revision=int(data.get("revision") or 1),
        )


_EVENT_KEYS = ("time_s", "mono_s", "type", "replica", "reason", "message", "exit_code")


@dataclass(frozen=True)
class Event:
    """One platform event (a line of events.jsonl); ``extra`` holds type-specific fields (delay_s, probe, ...)."""

    time_s: float
    mono_s: float
    type: str
    replica: str | None
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "time_s": self.time_s, "mono_s": self.mono_s, "type": self.type, "replica": self.replica,
            "reason": self.reason, "message": self.message, "exit_code": self.exit_code,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        return cls(
            time_s=float(data["time_s"]), mono_s=float(data["mono_s"]), type=str(data["type"]),
            replica=data.get("replica"), reason=data.get("reason") or "", message=data.get("message") or "",
            exit_code=data.get("exit_code"), extra={k: v for k, v in data.items() if k not in _EVENT_KEYS},
        )


@runtime_checkable
class Deployment(Protocol):
    """A deployed service spec. A context manager: leaving it (or ``close()``) tears everything down."""

    endpoint: str  # "http://127.0.0.1:PORT": the front balancer (the Service)
    state_path: Path
    events_path: Path
    fault_token: str  # bearer token the replicas' fault hooks accept
    memory_enforcement: str  # "cgroup-v1" | "cgroup-v2" | "rlimit" | "none"
    cpu_enforcement: str  # "cgroup-v1" | "cgroup-v2" | "none"

    def replicas(self) -> list[ReplicaStatus]: ...

    def wait_ready(self, count: int | None = None, timeout_s: float = 120.0) -> None: ...

    def kill_replica(self, name: str, sig: int = signal.SIGKILL) -> int: ...

    def events(self) -> list[Event]: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Deployment": ...

    def __exit__(self, *exc_info: object) -> None: ...


def read_events(path: str | Path) -> list[Event]:
    """Return the events in an events.jsonl file, oldest first (a torn last line is skipped); [] if absent."""
    events = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError):
            continue  # a line being written right now
    return events


def copy_events(deployment: Any, out_dir: str | Path) -> None:
    """Copy ``deployment``'s events.jsonl (as far as it goes) to ``out_dir``/events.jsonl, beside a run's
    results; nothing when it has none yet or it is that file already. Call it again after a teardown:
    the copy then ends with the deletions."""
    source, target = Path(deployment.events_path), Path(out_dir) / EVENTS_FILE
    if source.exists() and source.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def read_state(path: str | Path) -> dict[str, Any]:
    """Return a deployment's state file as a dict; raise DeploymentError if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeploymentError(f"no deployment state file at {path}") from None
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"cannot read deployment state {path}: {exc}") from exc


def read_replica(path: str | Path, name: str) -> ReplicaStatus:
    """Return one replica (by name) from a state file; raise DeploymentError naming the known replicas."""
    state = read_state(path)
    rows = state.get("replicas", [])
    for row in rows:
        if row.get("name") == name:
            return ReplicaStatus.from_dict(row)
    known = ", ".join(str(row.get("name")) for row in rows) or "none"
    raise DeploymentError(f"no replica {name!r} in {path} (replicas: {known})")
