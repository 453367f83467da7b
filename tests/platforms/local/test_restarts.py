"""Restarts on the local platform, against real replicas of the reference service (ranker-mlp).

Each test deploys, breaks one replica the way production breaks (a SIGKILL, a kernel OOM kill, a
liveness probe that times out, a process that dies at start) and reads the platform's events.
"""

from __future__ import annotations

import pytest

from harness.platforms.local import LocalDeployment
from harness.service.client import ServiceUnreachable, inject_fault

pytestmark = pytest.mark.slow

REPLICA = "reference-0"
READY_TIMEOUT_S = 90.0


def _types_since(deployment: LocalDeployment, mark: int, replica: str, *, skip: tuple[str, ...] = ("Unhealthy",)) -> list[str]:
    return [e.type for e in deployment.events()[mark:] if e.replica == replica and e.type not in skip]


def test_sigkilled_replica_is_restarted_and_ready_again_with_events_in_order(deploy_local, make_spec, post_infer):
    deployment = deploy_local(make_spec())
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    mark = deployment.event_count()

    pid = deployment.kill_replica(REPLICA)
    deployment.wait_event("Recovered", REPLICA, since=mark, timeout_s=READY_TIMEOUT_S)

    replica = deployment.replica(REPLICA)
    assert replica.ready and replica.restarts == 1 and replica.pid != pid
    assert (replica.last_exit_code, replica.last_reason) == (137, "Error")
    assert _types_since(deployment, mark, REPLICA) == ["Exited", "NotReady", "Started", "Ready", "Recovered"]
    events = deployment.events()[mark:]
    exited = next(e for e in events if e.type == "Exited")
    assert exited.exit_code == 137 and exited.extra["signal"] == "SIGKILL" and exited.extra["pid"] == pid
    assert exited.extra["killed_by"] is None  # the platform did not kill it: no Killing event either
    assert [e.mono_s for e in events] == sorted(e.mono_s for e in events)
    assert post_infer(deployment.endpoint)[0] == 200


@pytest.mark.cgroups
def test_replica_over_its_memory_limit_is_oom_killed_by_the_kernel_and_restarted(deploy_local, make_spec,
                                                                                 cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here: limits.memory falls back to RLIMIT_AS (no OOM kill)")
    deployment = deploy_local(make_spec(resources={"limits.memory": "1Gi"}))
    assert deployment.memory_enforcement in ("cgroup-v1", "cgroup-v2")
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    mark = deployment.event_count()

    try:  # a hog past the limit: the kernel kills the replica, maybe before it answers
        inject_fault(deployment.replica(REPLICA).url, "memory", deployment.fault_token,
                     {"target_mb": 2048, "duration_s": 60})
    except ServiceUnreachable:
        pass
    oom = deployment.wait_event("OOMKilled", REPLICA, since=mark, timeout_s=60)
    deployment.wait_event("Recovered", REPLICA, since=mark, timeout_s=READY_TIMEOUT_S)

    assert oom.exit_code == 137
    exited = deployment.wait_event("Exited", REPLICA, since=mark, timeout_s=1)
    assert (exited.exit_code, exited.reason, exited.extra["signal"]) == (137, "OOMKilled", "SIGKILL")
    types = _types_since(deployment, mark, REPLICA)
    at = types.index("OOMKilled")
    assert types[at:at + 2] == ["OOMKilled", "Exited"]
    # under memory pressure the readiness probe may fail (NotReady) before the kernel kills the
    # replica; either way it goes NotReady exactly once before it is started again
    before, between = types[:at], types[at + 2:types.index("Started", at)]
    assert before in ([], ["NotReady"]) and before + between == ["NotReady"], types
    replica = deployment.replica(REPLICA)
    assert replica.ready and replica.restarts == 1 and replica.last_reason == "OOMKilled"


def test_liveness_timeout_kills_and_restarts_after_exactly_failure_threshold_failures(deploy_local, make_spec):
    threshold = 3
    deployment = deploy_local(make_spec(probes={"liveness": {
        "periodSeconds": 0.3, "timeoutSeconds": 0.25, "failureThreshold": threshold}}))
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    mark = deployment.event_count()

    inject_fault(deployment.replica(REPLICA).url, "probe-delay", deployment.fault_token,
                 {"probe": "live", "delay_s": 5, "duration_s": 60})
    killing = deployment.wait_event("Killing", REPLICA, since=mark, timeout_s=30)
    deployment.wait_event("Recovered", REPLICA, since=mark, timeout_s=READY_TIMEOUT_S)

    events = deployment.events()[mark:]
    failures = [e for e in events if e.type == "Unhealthy" and e.extra["probe"] == "liveness"
                and e.mono_s <= killing.mono_s]
    assert [e.extra["failures"] for e in failures] == list(range(1, threshold + 1))
    assert all("timeout" in e.message for e in failures)
    assert killing.extra["killed_by"] == "liveness"
    exited = next(e for e in events if e.type == "Exited")
    assert exited.extra["killed_by"] == "liveness" and exited.mono_s >= killing.mono_s
    assert deployment.replica(REPLICA).restarts == 1


def test_replica_crashing_on_start_backs_off_with_growing_delays(deploy_local, make_spec):
    # an invalid flag makes every start of the service exit with code 2 before it binds its port
    deployment = deploy_local(make_spec(), extra_args=["--max-batch-size", "0"])
    mark = 0
    for _ in range(4):
        exited = deployment.wait_event("Exited", REPLICA, since=mark, timeout_s=60)
        mark = deployment.events().index(exited) + 1

    events = deployment.events()
    exits = [e for e in events if e.type == "Exited"][:4]
    starts = [e for e in events if e.type == "Started"][:4]
    delays = [e.extra["delay_s"] for e in events if e.type == "BackOff"][:2]
    assert [e.exit_code for e in exits] == [2, 2, 2, 2]
    assert delays == [0.5, 1.0]  # after the immediate first restart: base, then doubled
    waits = [later.mono_s - exit_.mono_s for exit_, later in zip(exits, starts[1:])]
    assert waits[0] < 0.5 <= waits[1] < 1.0 <= waits[2], waits  # each wait longer than the last
    replica = deployment.replica(REPLICA)
    assert replica.restarts >= 3 and replica.last_exit_code == 2 and not replica.ready
    assert replica.state in ("CrashLoopBackOff", "Running")
