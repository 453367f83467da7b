"""Rollouts and scaling on the local platform, with stub replicas (a real process and port that start in a
fraction of a second): the rolling update's maxSurge/maxUnavailable, blue-green's switch, a canary's
promotion, the progress deadline's rollback, and the control channel other processes use."""

from __future__ import annotations

import threading
import time

import pytest

from harness.errors import ConfigError, DeploymentError
from harness.platforms.base import read_state
from harness.platforms.local.control import send_control
from harness.service.client import request_json

READY_TIMEOUT_S = 60.0


def _ready_counts(events, since_s: float) -> list[int]:
    """Return the number of Ready replicas after each readiness change from ``since_s`` on."""
    ready: set[str] = set()
    counts = []
    for event in events:
        if event.type == "Ready":
            ready.add(event.replica)
        elif event.type in ("NotReady", "Exited"):
            ready.discard(event.replica)
        else:
            continue
        if event.time_s >= since_s:
            counts.append(len(ready))
    return counts


def _deployed(deploy_local, stub_spec, stub_command, **spec):
    deployment = deploy_local(stub_spec(**spec), command=stub_command)
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    return deployment


def test_a_rolling_update_replaces_one_replica_at_a_time_never_below_the_replica_count(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="multi-active", replicas=2)
    started = time.time()
    status = deployment.roll_out({"service": {"seed": 1}}, "rolling", timeout_s=60)

    assert status["phase"] == "Completed" and (status["from_revision"], status["revision"]) == (1, 2)
    assert (status["max_surge"], status["max_unavailable"]) == (1, 0)
    assert [(r.name, r.revision, r.ready) for r in deployment.replicas()] == [("reference-2", 2, True), ("reference-3", 2, True)]
    events = deployment.events()
    assert min(_ready_counts(events, started)) >= 2  # maxUnavailable 0: never fewer Ready than wanted
    scheduled = [e.replica for e in events if e.type == "Scheduled" and e.time_s >= started]
    killed = [e.replica for e in events if e.type == "Killing" and e.time_s >= started]
    assert scheduled == ["reference-2", "reference-3"] and killed == ["reference-0", "reference-1"]
    order = [(e.type, e.replica) for e in events if e.time_s >= started
             and (e.type == "Scheduled" or (e.type == "NotReady" and e.reason == "Terminating"))]
    assert order == [("Scheduled", "reference-2"), ("NotReady", "reference-0"), ("Scheduled", "reference-3"),
                     ("NotReady", "reference-1")]  # one at a time: an old one is un-routed once its successor is Ready
    state = read_state(deployment.state_path)
    assert state["revision"] == 2 and state["rollout"]["phase"] == "Completed" and state["desired_replicas"] == 2


def test_a_single_replica_is_unrouted_before_its_successor_starts(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command)
    started = time.time()
    status = deployment.roll_out({"service": {"seed": 1}}, timeout_s=60)

    assert status["phase"] == "Completed" and (status["max_surge"], status["max_unavailable"]) == (0, 1)
    events = [e for e in deployment.events() if e.time_s >= started]
    unrouted = next(e for e in events if e.type == "NotReady" and e.replica == "reference-0")
    scheduled = next(e for e in events if e.type == "Scheduled" and e.replica == "reference-1")
    assert unrouted.time_s <= scheduled.time_s  # no room for two: out of service before its successor starts
    assert 0 in _ready_counts(deployment.events(), started)


def test_blue_green_switches_every_request_at_once_after_green_is_ready(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="active-standby")
    started = time.time()
    status = deployment.roll_out({"service": {"max_batch_size": 16}}, "blue-green", timeout_s=60, scale_down_delay_s=0.5)

    assert status["phase"] == "Completed"
    events = [e for e in deployment.events() if e.time_s >= started]
    shifts = [e for e in events if e.type == "TrafficShifted"]
    assert [s.extra["weights"] for s in shifts] == [{"1": 100}, {"2": 100}, {}]
    green_ready = max(e.time_s for e in events if e.type == "Ready" and e.replica in ("reference-2", "reference-3"))
    first_blue_stop = min(e.time_s for e in events if e.type == "Killing")
    assert green_ready <= shifts[1].time_s <= first_blue_stop
    assert {r.revision for r in deployment.replicas()} == {2} and len(deployment.replicas()) == 2


def test_a_healthy_canary_is_promoted_after_its_analysis(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="multi-active", replicas=2)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                request_json("GET", deployment.endpoint + "/", timeout_s=2)
            except Exception:
                pass
            stop.wait(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        status = deployment.roll_out({"service": {"seed": 2}}, "canary", timeout_s=60, canary_weight=25,
                                     analysis_s=1.0, min_requests=5)
    finally:
        stop.set()
        sender.join(timeout=10)
    analysis = status["analysis"]
    assert status["phase"] == "Completed" and analysis["passed"], status
    assert analysis["canary_requests"] >= 5 and analysis["canary_failed"] == 0
    assert 0.1 < analysis["canary_requests"] / (analysis["canary_requests"] + analysis["stable_requests"]) < 0.4
    assert [e.type for e in deployment.events() if e.type in ("AnalysisCompleted", "RolloutCompleted")] == [
        "AnalysisCompleted", "RolloutCompleted"]
    assert {r.revision for r in deployment.replicas()} == {2}


def test_a_revision_that_never_gets_ready_is_rolled_back_at_the_progress_deadline(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="multi-active", replicas=2)
    broken = {"probes": {"readiness": {"path": "/missing"}}}  # the stub answers 404: never Ready
    status = deployment.roll_out(broken, timeout_s=60, progress_deadline_s=2)

    assert status["phase"] == "RolledBack" and "progressDeadlineSeconds" in status["why"]
    assert [(r.revision, r.ready) for r in deployment.replicas()] == [(1, True), (1, True)]
    assert deployment.events()[-1].type == "RolloutRolledBack"
    again = deployment.roll_out({"service": {"seed": 5}}, timeout_s=60)  # a later rollout starts from revision 1
    assert again["phase"] == "Completed" and (again["from_revision"], again["revision"]) == (1, 3)


def test_the_control_channel_needs_the_token_and_names_bad_values(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="multi-active", replicas=2)
    state = read_state(deployment.state_path)
    assert send_control(state, "status")["desired_replicas"] == 2
    with pytest.raises(DeploymentError, match="wrong or missing token"):
        send_control({**state, "fault_token": "nope"}, "status")
    with pytest.raises(ConfigError) as caught:
        send_control(state, "rollout", overlay={"replicas": 5})
    assert caught.value.field == "overlay.replicas"
    with pytest.raises(ConfigError) as caught:
        send_control(state, "rollout", strategy="big-bang")
    assert caught.value.field == "strategy"
    assert send_control(state, "scale", replicas=3)["changed"] == ["reference-2"]
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    assert len([r for r in deployment.replicas() if r.ready]) == 3
    removed = deployment.scale(2)
    assert removed == ["reference-2"]  # the newest goes first
    deadline = time.monotonic() + 20
    while len(deployment.replicas()) != 2:
        assert time.monotonic() < deadline, deployment.replicas()
        time.sleep(0.1)
    scaled = [e for e in deployment.events() if e.type == "ScalingReplicaSet"]
    assert [(e.extra["from_replicas"], e.extra["replicas"]) for e in scaled] == [(2, 3), (3, 2)]


def test_a_fixed_topology_cannot_be_scaled(deploy_local, stub_spec, stub_command):
    deployment = _deployed(deploy_local, stub_spec, stub_command, topology="active-standby")
    with pytest.raises(ConfigError) as caught:
        deployment.scale(3)
    assert caught.value.field == "replicas" and "fixed replica count" in caught.value.reason
