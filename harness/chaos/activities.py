"""Chaos Toolkit activities (python provider) for a deployment on the local platform.

Every activity takes ``state_file``, the JSON state file that `harness up` / `harness chaos run`
keeps (endpoint, fault token, events file, each replica's pid, port, url and readiness), and re-reads
it on every call, so the activities work from `chaos run` in its own process as well as from the
harness. Experiments pass it as ``"${state_file}"`` with::

    "configuration": {"state_file": {"type": "env", "key": "HARNESS_STATE_FILE", "default": "harness-state.json"}}

Replicas are chosen by ``replica``: a name, ``"first-ready"`` (the first Ready replica in state-file
order: the primary of an active-standby pair), ``"any"`` (the first with a process), ``"all"`` (fault
and clear actions only), or ``"injected"`` (the one the last action of this process hit). Actions
remember what they hit and when, so later probes (`wait_for_events`) judge only what followed.

This module imports nothing heavy (no torch, no locust): chaos imports it in its own process. Any
error becomes `ActivityFailed` with a one-line message, which chaoslib records in the journal.
"""

from __future__ import annotations

import math
import signal as signals
import statistics
import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import (
    HTTP_TIMEOUT_S,
    POLL_S,
    continue_frozen,
    failing,
    last_injection,
    live_pid,
    memory_limit_mb,
    read_state_file,
    remember,
    replicas,
    select,
    service_client,
    signal_number,
    signal_replica,
    timed_infer,
)
from harness.errors import HarnessError
from harness.faultparams import FAULT_KINDS
from harness.slo import DEFAULT_P99_MS

__all__ = [
    "kill_replica",
    "terminate_replica",
    "freeze_replica",
    "inject_fault",
    "delay_probe",
    "oom_replica",
    "clear_faults",
    "ready_replica_count",
    "all_replicas_ready",
    "wait_for_ready",
    "wait_for_events",
    "detect_memory_leak",
    "endpoint_responds_within",
    "availability_over_last",
]

# --- actions ----------------------------------------------------------------------------------


@failing
def kill_replica(state_file: str, replica: str = "first-ready", signal: str = "SIGKILL") -> dict[str, Any]:
    """Send ``signal`` (default SIGKILL: a pod kill) to one replica's process; return what was hit."""
    row = select(read_state_file(state_file), replica)[0]
    pid = live_pid(row)
    number = signal_number(signal)
    signal_replica(pid, number)  # SIGKILL: every process of the replica, as a pod kill
    at = remember(row, "kill_replica")
    return {"replica": row["name"], "pid": pid, "signal": signals.Signals(number).name, "time_s": at}


@failing
def terminate_replica(state_file: str, replica: str = "first-ready", grace_period_s: float = 30.0) -> dict[str, Any]:
    """Stop one replica as a pod deletion does: SIGTERM, wait up to ``grace_period_s``, then SIGKILL.

    Returns the replica, whether it exited within the grace period, and how long it took.
    """
    import numpy as np
    import psutil

    from harness.measure.alerts import slope_per_s

    row = select(read_state_file(state_file), replica)[0]
    pid = live_pid(row)
    process = psutil.Process(pid)
    signal_replica(pid, signals.SIGTERM)  # the main process alone: the server's own shutdown
    at = remember(row, "terminate_replica")
    try:
        process.wait(timeout=max(0.0, float(grace_period_s)))
        graceful = True
    except psutil.TimeoutExpired:
        graceful = False
        try:
            if process.is_running():  # psutil's check: still that process, not a reused pid
                signal_replica(pid, signals.SIGKILL)  # the grace period is over: every process of it
        except ProcessLookupError:
            pass
    except psutil.NoSuchProcess:
        graceful = True
    return {"replica": row["name"], "pid": pid, "graceful": graceful, "stop_s": round(time.time() - at, 3), "time_s": at}


MAX_FREEZE_S = 3600.0


@failing
def freeze_replica(state_file: str, replica: str = "first-ready", duration_s: float = 3.0) -> dict[str, Any]:
    """Freeze one replica's process with SIGSTOP for ``duration_s``, then SIGCONT it: a hang that needs
    nothing from the server (its event loop, worker thread and probes all stop answering; the kernel
    still accepts connections). Returns when it resumed, with the exact times of both signals.

    The process is continued on every way out of this call, an interrupt or an error included.
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not 0 < float(duration_s) <= MAX_FREEZE_S:
        raise ActivityFailed(f"duration_s={duration_s!r}: must be a number of seconds above 0 and at most {MAX_FREEZE_S:g}")
    row = select(read_state_file(state_file), replica)[0]
    pid = live_pid(row)
    signal_replica(pid, signals.SIGSTOP)  # every process of the replica, as a container pause
    at = remember(row, "freeze_replica")
    try:
        time.sleep(float(duration_s))
    finally:
        try:
            signal_replica(pid, signals.SIGCONT)
        except ProcessLookupError:
            pass  # killed while frozen (a liveness restart): nothing left to continue
        resumed = time.time()
    return {"replica": row["name"], "pid": pid, "time_s": at, "resumed_at_s": resumed,
            "frozen_s": round(resumed - at, 4)}


@failing
def inject_fault(state_file: str, kind: str, params: dict[str, Any] | None = None, replica: str = "first-ready") -> dict[str, Any]:
    """Inject a service fault (``kind``: probe-delay, slow-inference, memory, hang, crash) with ``params``.

    ``replica`` may be ``"all"``. Returns the replicas hit and the service's answers.
    """
    if kind not in FAULT_KINDS:
        raise ActivityFailed(f"kind={kind!r}: unknown fault; choose one of {', '.join(FAULT_KINDS)}")
    state = read_state_file(state_file)
    token = state.get("fault_token") or ""
    hit = {}
    at = time.time()
    for row in select(state, replica, allow_all=True):
        hit[row["name"]] = service_client().inject_fault(row["url"], kind, token, dict(params or {}), timeout_s=HTTP_TIMEOUT_S)
        at = remember(row, f"inject_fault:{kind}")
    return {"kind": kind, "params": params or {}, "replicas": hit, "time_s": at}


def delay_probe(state_file: str, probe: str = "live", delay_s: float = 2.0, duration_s: float = 30.0, replica: str = "first-ready") -> dict[str, Any]:
    """Make one replica's liveness (``probe="live"``) or readiness (``"ready"``) answer ``delay_s`` late."""
    if probe not in ("live", "ready"):
        raise ActivityFailed(f"probe={probe!r}: must be 'live' or 'ready'")
    return inject_fault(state_file, "probe-delay", {"probe": probe, "delay_s": delay_s, "duration_s": duration_s}, replica)


@failing
def oom_replica(
    state_file: str, replica: str = "first-ready", over_limit_mb: float = 256.0, rate_mb_s: float = 0.0, duration_s: float = 120.0
) -> dict[str, Any]:
    """Grow one replica's memory past its cgroup's limit so the kernel OOM-kills it.

    With ``rate_mb_s`` 0 the service allocates the limit plus ``over_limit_mb`` at once (a hog);
    otherwise it leaks at ``rate_mb_s`` for ``duration_s``. Fails when the deployment does not
    enforce ``limits.memory`` with a cgroup (then no kernel OOM kill can happen).
    """
    state = read_state_file(state_file)
    enforcement = str(state.get("memory_enforcement") or "none")
    if not enforcement.startswith("cgroup"):
        raise ActivityFailed(
            f"memory_enforcement={enforcement!r}: limits.memory is not enforced by a cgroup here, so there is no kernel OOM kill to cause"
        )
    row = select(state, replica)[0]
    limit_mb = memory_limit_mb(row)
    if limit_mb is None:
        raise ActivityFailed(f"replica {row['name']} has no memory limit in its cgroup ({row.get('cgroup')}); set resources.limits.memory")
    params: dict[str, Any] = {"duration_s": duration_s}
    if rate_mb_s > 0:
        params["rate_mb_s"] = rate_mb_s
    else:
        params["target_mb"] = math.ceil(limit_mb + over_limit_mb)
    at = remember(row, "oom_replica")
    try:
        answer: Any = service_client().inject_fault(row["url"], "memory", state.get("fault_token") or "", params, timeout_s=HTTP_TIMEOUT_S)
    except service_client().ServiceUnreachable:
        answer = "no answer: killed while allocating"  # the kernel was faster than the reply

    return {"replica": row["name"], "limit_mb": round(limit_mb, 1), "params": params, "answer": answer, "time_s": at}


@failing
def clear_faults(state_file: str, replica: str = "all") -> dict[str, Any]:
    """Clear every injected fault on ``replica`` (default all), and continue a frozen process; a replica
    without a process has none.

    Returns per replica "cleared", "no process" or the error; never fails for a replica that is
    restarting, since a new process starts without faults.
    """
    state = read_state_file(state_file)
    outcome: dict[str, str] = {}
    for row in select(state, replica, allow_all=True):
        continue_frozen(row)
        if not row.get("pid") or not row.get("url"):
            outcome[row["name"]] = "no process"
            continue
        try:
            service_client().clear_faults(row["url"], state.get("fault_token") or "")
            outcome[row["name"]] = "cleared"
        except (HarnessError, OSError) as exc:
            outcome[row["name"]] = f"not reachable ({exc})"
    return outcome


# --- probes -----------------------------------------------------------------------------------


@failing
def ready_replica_count(state_file: str) -> int:
    """Return how many replicas are Ready (receiving traffic from the balancer)."""
    return sum(1 for row in replicas(read_state_file(state_file)) if row.get("ready"))


@failing
def all_replicas_ready(state_file: str) -> bool:
    """Return True when every replica of the deployment is Ready."""
    rows = replicas(read_state_file(state_file))
    return bool(rows) and all(row.get("ready") for row in rows)


@failing
def wait_for_ready(state_file: str, count: int | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until ``count`` replicas (default all) are Ready; return how long it took.

    Fails after ``timeout_s`` naming each replica's state and last exit reason.
    """
    start = time.monotonic()
    while True:
        rows = replicas(read_state_file(state_file))
        wanted = len(rows) if count is None else int(count)
        ready = sum(1 for row in rows if row.get("ready"))
        if rows and ready >= wanted:
            return {"ready": ready, "wanted": wanted, "waited_s": round(time.monotonic() - start, 3)}
        if time.monotonic() - start > timeout_s:
            detail = ", ".join(
                f"{r.get('name')}: {r.get('state')} restarts={r.get('restarts')} last={r.get('last_reason')}" for r in rows
            )
            raise ActivityFailed(f"{ready}/{wanted} replicas Ready after {timeout_s:g}s ({detail})")
        time.sleep(POLL_S)


@failing
def wait_for_events(
    state_file: str,
    sequence: list[str],
    absent: list[str] | None = None,
    exit_code: int | None = None,
    backoff_growing: bool = False,
    replica: str = "injected",
    timeout_s: float = 60.0,
    since: str = "injection",
) -> list[dict[str, Any]]:
    """Wait for the platform events that should follow the last injection of this run; return them.

    ``sequence`` must appear in order on ``replica`` (or any replica with ``replica="any"``); then
    ``absent`` types must not have appeared, ``exit_code`` must be among the exits, and with
    ``backoff_growing`` the BackOff delays must grow. ``since="deployment"`` judges every event
    since the deployment started instead (for faults that are the start itself). Fails after
    ``timeout_s`` with what was seen.
    """
    from harness.chaos.behaviour import check_behaviour, events_after, match_sequence
    from harness.chaos.experiment import Expectation
    from harness.platforms.base import read_events

    if since not in ("injection", "deployment"):
        raise ActivityFailed(f"since={since!r}: must be 'injection' or 'deployment'")
    if replica == "injected" and since == "deployment":
        replica = "any"
    expectation = Expectation(
        sequence=sequence, absent=absent or [], exit_code=exit_code, backoff_growing=backoff_growing, same_replica=replica != "any"
    )
    target = last_injection.get("replica") if replica == "injected" else (None if replica == "any" else replica)
    events_path = read_state_file(state_file).get("events_path")
    if not events_path:
        raise ActivityFailed(f"state file {state_file} names no events_path")
    if since == "deployment":
        first = read_events(events_path)
        since_s = first[0].time_s if first else 0.0
    else:
        since_s = last_injection.get("time_s")
        if since_s is None:
            raise ActivityFailed("no action of this run injected a fault yet; wait_for_events follows one")
    start = time.monotonic()
    scope = target if expectation.same_replica else None
    while True:
        events = read_events(events_path)
        window = events_after(events, since_s, scope)
        sequence_seen = len(match_sequence(window, sequence)) == len(sequence)
        findings = check_behaviour(events, expectation, since_s=since_s, replica=target)
        timed_out = time.monotonic() - start > timeout_s
        # the sequence decides when to stop; growing back-off needs a second BackOff, so it may wait on
        if sequence_seen and (not findings or not backoff_growing or timed_out):
            if findings:
                raise ActivityFailed("; ".join(findings))
            return [
                {"type": e.type, "replica": e.replica, "after_s": round(e.time_s - since_s, 3), "exit_code": e.exit_code}
                for e in window
            ]
        if timed_out:
            raise ActivityFailed(f"after {timeout_s:g}s: " + "; ".join(findings))
        time.sleep(POLL_S * 2)


@failing
def detect_memory_leak(
    state_file: str, replica: str = "injected", threshold_mb_s: float = 10.0, window_s: float = 3.0, timeout_s: float = 30.0
) -> dict[str, Any]:
    """Watch one replica's RSS until its growth rate over ``window_s`` passes ``threshold_mb_s`` (the leak alert).

    Returns the growth rate, when the alert fired (seconds after the injection) and the RSS. Fails
    when the process ends first (killed before the alert) or after ``timeout_s``.
    """
    import numpy as np
    import psutil

    from harness.measure.alerts import slope_per_s

    row = select(read_state_file(state_file), replica)[0]
    process = psutil.Process(live_pid(row))
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    while time.monotonic() - start <= timeout_s:
        try:
            samples.append((time.monotonic(), process.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            raise ActivityFailed(f"replica {row['name']} ended before its memory growth passed {threshold_mb_s:g} MB/s") from None
        recent = [(t, m) for t, m in samples if t >= samples[-1][0] - window_s]
        if len(recent) >= 3 and recent[-1][0] - recent[0][0] >= window_s * 0.8:
            slope = slope_per_s(np.array([t for t, _ in recent]), np.array([m for _, m in recent]))  # the alert's own rule
            if slope > threshold_mb_s:
                since = last_injection.get("time_s", time.time())
                return {"replica": row["name"], "growth_mb_s": round(slope, 2), "rss_mb": round(samples[-1][1], 1), "alert_after_s": round(time.time() - since, 3)}
        time.sleep(0.25)
    raise ActivityFailed(f"replica {row['name']}: memory growth stayed under {threshold_mb_s:g} MB/s for {timeout_s:g}s")


@failing
def endpoint_responds_within(state_file: str, latency_ms: float = DEFAULT_P99_MS, attempts: int = 3) -> bool:
    """Return True when the deployment's endpoint answers inference requests with a median latency
    within ``latency_ms`` over ``attempts`` requests (every one must succeed)."""
    state = read_state_file(state_file)
    endpoint = state.get("endpoint")
    if not endpoint:
        raise ActivityFailed(f"state file {state_file} names no endpoint")
    latencies = []
    for _ in range(max(1, int(attempts))):  # in the target's protocol, where the state file names one
        ok, elapsed_ms = timed_infer(endpoint, max(1.0, latency_ms / 1000 * 4), state.get("protocol"))
        if not ok:
            return False
        latencies.append(elapsed_ms)
    return statistics.median(latencies) <= latency_ms


@failing
def availability_over_last(source: str, seconds: float = 10.0, interval_s: float = 0.1) -> float:
    """Return availability in percent over the last ``seconds``.

    ``source`` is a prober timeline (``timeline.csv``: its samples of the last ``seconds``) or a
    state file (then this probe samples the endpoint every ``interval_s`` for ``seconds`` itself,
    so the figure covers the ``seconds`` before it returns). Fails when there is no sample.
    """
    if str(source).endswith(".csv"):
        from harness.request_records import ProbeSample, read_records

        samples = list(read_records(source, ProbeSample))
        if not samples:
            raise ActivityFailed(f"no prober samples in {source}")
        cutoff = max(s.t_s for s in samples) - seconds
        window = [s for s in samples if s.t_s >= cutoff]
        return 100.0 * sum(1 for s in window if s.ok) / len(window)
    state = read_state_file(source)
    endpoint, results = state.get("endpoint"), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        results.append(timed_infer(endpoint, max(interval_s * 10, 1.0), state.get("protocol"))[0])
        time.sleep(max(0.0, interval_s - (time.monotonic() - tick)))
    if not results:
        raise ActivityFailed("no request completed in the window")
    return 100.0 * sum(results) / len(results)
