"""A service spec deployed on Kubernetes, with the same interface as the local platform's deployment
(`harness.platforms.base.Deployment`): endpoint, replicas(), wait_ready(), kill_replica() (a pod
delete), events(), close().

It either applies the rendered manifests itself (and deletes them on close) or attaches to a service
already applied by an operator, which is what the in-cluster runner does: attached, it only makes
the calls in `rbac.ATTACH_CALLS`. A team's own Deployment (a spec's ``deployment`` target) is
`harness.platforms.kubernetes.attach.AttachedDeployment`, this class with that Deployment's name,
pod selector, port, replica count and grace period. Like the local platform, it keeps a state file and an append-only
``events.jsonl`` in its work directory: Kubernetes events, translated, plus the transitions it sees
when it reads the pods (Ready, NotReady, Exited, OOMKilled, Recovered).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from harness.config import ServiceSpec
from harness.errors import DeploymentError, HarnessError
from harness.platforms.base import (
    BACK_OFF, DELETED, EXITED, KILLING, NOT_READY, OOM_KILLED, READY, RECOVERED, SCHEDULED, STARTED,
    UNHEALTHY, Event, ReplicaStatus,
)
from harness.platforms.kubernetes.client import KubernetesClient
from harness.platforms.kubernetes.manifests import container_port, selector
from harness.platforms.kubernetes.options import DEFAULT_IMAGE, DEFAULT_NAMESPACE, RenderOptions
from harness.platforms.kubernetes.render import render_manifests

__all__ = ["KubernetesDeployment", "deploy_kubernetes", "replica_status", "translate_event"]

# Kubernetes event reasons that have a name in the harness's event vocabulary; others keep their own.
_REASONS = {"Scheduled": SCHEDULED, "Started": STARTED, "Killing": KILLING, "Unhealthy": UNHEALTHY, "BackOff": BACK_OFF}
READY_PATH = "/v2/health/ready"  # the reference service's readiness path (the experiments ask it through the Service)
WATCH_INTERVAL_S = 1.0  # how often the watcher reads the pods (Ready/NotReady/restart transitions)
_EVENTS_EVERY = 5  # ... and every this many reads, the namespace's events


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def replica_status(pod: Any, port: int) -> ReplicaStatus:
    """Return a pod (V1Pod) as a replica row: state, readiness, restarts, last termination."""
    status = pod.status
    container = (status.container_statuses or [None])[0] if status else None
    ready = any(c.type == "Ready" and c.status == "True" for c in (status.conditions or [])) if status else False
    state, started_s = (status.phase if status and status.phase else "Pending"), None
    if container is not None and container.state is not None:
        if container.state.running is not None:
            state, started_s = "Running", _timestamp(container.state.running.started_at)
        elif container.state.waiting is not None:
            state = "CrashLoopBackOff" if container.state.waiting.reason == "CrashLoopBackOff" else "Pending"
        elif container.state.terminated is not None:
            state = "Terminated"
    if pod.metadata.deletion_timestamp is not None:
        state = "Terminating"
    last = container.last_state.terminated if container is not None and container.last_state else None
    ip = status.pod_ip if status else None
    return ReplicaStatus(
        name=pod.metadata.name, pid=None, port=port, url=f"http://{ip}:{port}" if ip else None, state=state,
        ready=ready, restarts=container.restart_count if container is not None else 0,
        last_exit_code=last.exit_code if last is not None else None, last_reason=last.reason if last is not None else None,
        started_s=started_s,
    )


def translate_event(event: Any) -> Event:
    """Return a Kubernetes event (CoreV1Event) as a harness Event; the replica is the pod's name."""
    when = event.event_time or event.last_timestamp or event.first_timestamp or event.metadata.creation_timestamp
    time_s = _timestamp(when) or time.time()
    obj = event.involved_object
    extra: dict[str, Any] = {"kind": obj.kind, "object": obj.name, "count": event.count or 1}
    if event.reason == "Unhealthy":
        probe = (event.message or "").split(" ", 1)[0].lower()
        if probe in ("liveness", "readiness", "startup"):
            extra["probe"] = probe
    return Event(
        time_s=time_s, mono_s=time.monotonic() - (time.time() - time_s), type=_REASONS.get(event.reason, event.reason or "Unknown"),
        replica=obj.name if obj.kind == "Pod" else None, reason=event.reason or "", message=event.message or "", extra=extra,
    )


class KubernetesDeployment:
    """A spec running on a cluster; a context manager (leaving it deletes what it applied)."""

    memory_enforcement = "kubernetes"  # the kubelet's cgroups enforce limits.memory
    cpu_enforcement = "kubernetes"

    def __init__(self, spec: ServiceSpec, client: KubernetesClient, *, namespace: str, workdir: str | Path,
                 applied: list[dict[str, Any]] | None = None, endpoint: str | None = None, fault_token: str = "",
                 name: str | None = None, port: int | None = None, label_selector: str | None = None) -> None:
        """``name``, ``port`` and ``label_selector`` default to the rendered service's (the spec's name, its
        container port, its labels); a Deployment the harness did not render gives its own."""
        self.spec = spec
        self.client = client
        self.namespace = namespace
        self.applied = list(applied or [])  # empty when attached: close() deletes nothing
        self.name = name or spec.name
        self.port = port or container_port(spec)
        self.endpoint = endpoint or f"http://{self.name}.{namespace}.svc.cluster.local:{self.port}"
        self.fault_token = fault_token
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.workdir / "state.json"
        self.events_path = self.workdir / "events.jsonl"
        self.label_selector = label_selector or ",".join(f"{k}={v}" for k, v in selector(spec).items())
        self.replica_count = spec.replica_count  # how many pods Ready is Ready
        self.grace_period_s = spec.termination_grace_period_s  # a SIGTERM kill's pod deletion grace
        self.ready_path = READY_PATH
        self.state_extra: dict[str, Any] = {}  # more for the state file (what an attached Deployment was read as)
        self._seen: dict[str, ReplicaStatus] = {}
        self._not_ready_since: dict[str, float] = {}
        self._seen_events: set[tuple[str, int]] = set()
        self._lock = threading.RLock()  # the watcher thread and callers read the cluster concurrently
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.watch_errors: list[str] = []
        self._closed = False

    # -- the Deployment interface ------------------------------------------------------------------
    def replicas(self) -> list[ReplicaStatus]:
        """Return the service's pods as replica rows; record transitions since the last read."""
        with self._lock:
            rows = [replica_status(pod, self.port) for pod in self.client.list_pods(self.namespace, self.label_selector)]
            self._record_transitions(rows)
            self._write_state(rows)
            return rows

    def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Start reading the pods every ``interval_s`` (and the events every few reads) in a thread,
        so that events.jsonl holds the Ready/NotReady/restart transitions with their times, as the local
        platform's supervisor records them; `close` stops it. A failed read is kept in
        ``watch_errors`` and the watcher goes on (the API server may be briefly unreachable)."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, args=(interval_s,), name="k8s-watch", daemon=True)
        self._watcher.start()

    def _watch(self, interval_s: float) -> None:
        reads = 0
        while not self._stop.wait(interval_s):
            try:
                self.replicas()
                reads += 1
                if reads % _EVENTS_EVERY == 0:
                    self.events()
            except Exception as exc:  # noqa: BLE001 - a dead watcher would stop recording without a word
                if len(self.watch_errors) < 100:
                    what = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
                    self.watch_errors.append(f"{time.time():.3f}: {what}")

    def wait_ready(self, count: int | None = None, timeout_s: float = 120.0) -> None:
        """Return once ``count`` pods (default: the spec's replicas) are Ready; raise DeploymentError on timeout."""
        want = self.replica_count if count is None else count
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.replicas()
            ready = [row for row in rows if row.ready and row.state == "Running"]
            if len(ready) >= want:
                return
            if time.monotonic() >= deadline:
                states = ", ".join(f"{r.name}={r.state}{'/ready' if r.ready else ''}" for r in rows) or "no pods"
                raise DeploymentError(f"{len(ready)} of {want} replicas of {self.namespace}/{self.name} Ready after {timeout_s:g} s ({states})")
            time.sleep(1.0)

    def kill_replica(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Delete pod ``name`` as the signal would end it: SIGKILL deletes at once (grace 0), any other
        signal gives the pod its termination grace period. Return the grace period in seconds.

        Raises DeploymentError naming the known pods when ``name`` is not one of the service's pods.
        """
        pod = self.client.read_pod(self.namespace, name)
        if pod is None or not self._owns(pod):
            known = ", ".join(row.name for row in self.replicas()) or "none"
            raise DeploymentError(f"no replica {name!r} in {self.namespace}/{self.name} (replicas: {known})")
        grace_s = 0 if sig == signal.SIGKILL else int(self.grace_period_s)
        self._append([Event(time.time(), time.monotonic(), KILLING, name, reason="Chaos",
                            message=f"deleting pod (grace {grace_s} s) for {signal.Signals(sig).name}")])
        self.client.delete_pod(self.namespace, name, grace_period_s=grace_s)
        return grace_s

    def _owns(self, pod: Any) -> bool:
        """Return True when ``pod`` (V1Pod) is one of this service's (the rendered service's name label)."""
        return (pod.metadata.labels or {}).get("app.kubernetes.io/name") == self.spec.name

    def events(self) -> list[Event]:
        """Return every event recorded so far (after adding new cluster events), oldest first."""
        prefix = f"{self.name}-"
        fresh = []
        with self._lock:
            for item in self.client.list_events(self.namespace):
                obj = item.involved_object
                if obj is None or not (obj.name == self.name or (obj.name or "").startswith(prefix)):
                    continue
                key = (item.metadata.uid or item.metadata.name, item.count or 1)
                if key in self._seen_events:
                    continue
                self._seen_events.add(key)
                fresh.append(translate_event(item))
            self._append(sorted(fresh, key=lambda e: e.time_s))
        from harness.platforms.base import read_events

        return sorted(read_events(self.events_path), key=lambda e: e.time_s)

    def clear_faults(self) -> dict[str, str]:
        """End every fault on every running pod (DELETE /v2/faults on each pod's own address, since the
        Service would pick one pod); return per pod "cleared", "no address" or why it was not reachable.
        Without a fault token here nothing can have been injected through the hooks by this run."""
        from harness.service.client import clear_faults

        if not self.fault_token:
            return {row.name: "no fault token here (HARNESS_FAULT_TOKEN unset)" for row in self.replicas()}
        outcome: dict[str, str] = {}
        for row in self.replicas():
            if not row.url or row.state != "Running":
                outcome[row.name] = "no address" if not row.url else f"not running ({row.state})"
                continue
            try:
                clear_faults(row.url, self.fault_token)
                outcome[row.name] = "cleared"
            except (HarnessError, OSError) as exc:
                outcome[row.name] = f"not reachable ({exc})"
        return outcome

    def close(self) -> None:
        """Delete what this deployment applied (not the namespace) and wait, bounded, for its pods to go."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._watcher is not None:  # one pass is at most two API calls, each bounded by the request timeout
            self._watcher.join(timeout=2 * self.client.request_timeout_s + 5.0)
            if self._watcher.is_alive():
                self.watch_errors.append(f"{time.time():.3f}: the watcher did not stop; its last read may be missing")
        try:
            try:
                self.events()  # the last cluster events (Killing, BackOff ...) before the records close
            except HarnessError as exc:
                self.watch_errors.append(f"{time.time():.3f}: final events: {exc}")
            if self.applied:
                self.client.delete(self.applied)
                deadline = time.monotonic() + max(30.0, self.grace_period_s + 30.0)
                while self.client.list_pods(self.namespace, self.label_selector) and time.monotonic() < deadline:
                    time.sleep(1.0)
                self._append([Event(time.time(), time.monotonic(), DELETED, None, message=f"deleted {len(self.applied)} objects")])
        finally:
            self.client.close()

    def __enter__(self) -> "KubernetesDeployment":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- records -----------------------------------------------------------------------------------
    def _record_transitions(self, rows: list[ReplicaStatus]) -> None:
        now, mono = time.time(), time.monotonic()
        events = []
        for row in rows:
            before = self._seen.get(row.name)
            if before is not None and row.restarts > before.restarts:
                kind = OOM_KILLED if row.last_reason == "OOMKilled" else EXITED
                events.append(Event(now, mono, kind, row.name, reason=row.last_reason or "", exit_code=row.last_exit_code))
            was_ready = before.ready if before is not None else False
            if row.ready and not was_ready:
                down_since = self._not_ready_since.pop(row.name, None)
                events.append(Event(now, mono, READY, row.name))
                if down_since is not None:
                    events.append(Event(now, mono, RECOVERED, row.name, extra={"down_s": round(mono - down_since, 3)}))
            elif was_ready and not row.ready:
                self._not_ready_since[row.name] = mono
                events.append(Event(now, mono, NOT_READY, row.name))
            self._seen[row.name] = row
        for name in sorted(set(self._seen) - {row.name for row in rows}):
            gone = self._seen.pop(name)  # the pod is gone; its replacement has a new name
            self._not_ready_since.pop(name, None)
            if gone.ready:  # a deleted or evicted pod stops serving: as the local platform's exited replica
                events.append(Event(now, mono, NOT_READY, name, reason="PodDeleted", message=f"pod {name} is gone"))
        self._append(events)

    def _append(self, events: list[Event]) -> None:
        if not events:
            return
        with self._lock, open(self.events_path, "a", encoding="utf-8") as handle:  # whole lines, one writer at a time
            handle.write("".join(json.dumps(event.to_dict(), default=str) + "\n" for event in events))

    def _write_state(self, rows: list[ReplicaStatus]) -> None:
        state = {
            "platform": "kubernetes", "namespace": self.namespace, "deployment": self.name,
            "endpoint": self.endpoint, "topology": self.spec.topology, "replicas": [row.to_dict() for row in rows],
            **self.state_extra,
        }
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(tmp, self.state_path)


def deploy_kubernetes(spec: ServiceSpec, *, namespace: str = DEFAULT_NAMESPACE, image: str = DEFAULT_IMAGE,
                      workdir: str | Path, apply: bool | None = None, client: KubernetesClient | None = None,
                      context: str | None = None, endpoint: str | None = None, wait: bool = True,
                      timeout_s: float = 300.0, options: RenderOptions | None = None,
                      watch_interval_s: float | None = WATCH_INTERVAL_S) -> KubernetesDeployment:
    """Deploy ``spec`` to a cluster and return it once rolled out (unless ``wait`` is False).

    ``apply=None`` attaches to an already applied service when running inside a pod (the in-cluster
    runner, whose RBAC allows no create) and applies the rendered manifests otherwise; True/False
    force either. ``endpoint`` overrides the in-cluster Service URL (an address that reaches the Service).
    ``options`` (full render options) take the place of ``image`` and ``namespace`` when given.
    ``watch_interval_s`` starts the pod watcher (`KubernetesDeployment.watch`); None leaves it off.
    Raises PlatformUnavailable (no cluster configured or reachable), ConfigError (spec cannot be
    rendered) or DeploymentError (refused, or not rolled out within ``timeout_s``).
    """
    options = options or RenderOptions(image=image, namespace=namespace)
    objects = render_manifests(spec, options)  # validate before touching the cluster
    if apply is None:
        apply = not os.environ.get("KUBERNETES_SERVICE_HOST")
    client = client or KubernetesClient(context=context)
    applied: list[dict[str, Any]] = []
    try:
        if apply:
            client.apply(objects)
            applied = objects
        deployment = KubernetesDeployment(spec, client, namespace=options.namespace, workdir=workdir,
                                          applied=applied, endpoint=endpoint, fault_token=os.environ.get("HARNESS_FAULT_TOKEN", ""))
        if wait:
            client.wait_rollout(options.namespace, spec.name, timeout_s=timeout_s)
            deployment.wait_ready(timeout_s=timeout_s)
        if watch_interval_s is not None:
            deployment.watch(watch_interval_s)
    except BaseException:
        try:
            if applied:
                client.delete(applied)  # leave nothing half-deployed behind
        except HarnessError:
            pass  # the original error says more than a failed cleanup
        finally:
            client.close()
        raise
    return deployment
