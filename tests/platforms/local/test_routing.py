"""The front balancer: traffic only to Ready replicas, per topology, and the optional connect retry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from harness.platforms.local.ports import free_port
from harness.service.client import inject_fault, request_json

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 90.0


def _per_replica(deployment) -> dict[str, int]:
    return {b["name"]: b["requests"] for b in deployment.balancer_stats()["backends"]}


def test_replica_failing_readiness_gets_no_traffic_until_it_recovers(deploy_local, make_spec, post_infer):
    deployment = deploy_local(make_spec(topology="multi-active", replicas=2))
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    mark = deployment.event_count()

    inject_fault(deployment.replica("reference-0").url, "probe-delay", deployment.fault_token,
                 {"probe": "ready", "delay_s": 3, "duration_s": 5})
    deployment.wait_event("NotReady", "reference-0", since=mark, timeout_s=30)
    before = _per_replica(deployment)
    answers = [post_infer(deployment.endpoint) for _ in range(20)]
    sent_until = time.monotonic()
    during = _per_replica(deployment)
    ready_again = deployment.wait_event("Ready", "reference-0", since=mark, timeout_s=60)
    answers_after = [post_infer(deployment.endpoint) for _ in range(20)]

    assert ready_again.mono_s > sent_until, "the replica recovered while the test was still sending"
    assert answers == [(200, "reference-1")] * 20
    assert during["reference-0"] == before["reference-0"]
    assert during["reference-1"] == before["reference-1"] + 20
    assert {status for status, _ in answers_after} == {200}
    assert {replica for _, replica in answers_after} == {"reference-0", "reference-1"}
    assert not [e for e in deployment.events()[mark:] if e.type == "Killing"]  # readiness never kills


def test_multi_active_killing_one_replica_leaves_the_endpoint_answering(deploy_local, make_spec, post_infer):
    deployment = deploy_local(make_spec(topology="multi-active", replicas=2))
    deployment.wait_ready(timeout_s=READY_TIMEOUT_S)
    answers: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            started = time.monotonic()
            answers.append((started, *post_infer(deployment.endpoint)))
            stop.wait(0.02)  # leave the restarting replica some CPU

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while len(answers) < 10:
            time.sleep(0.05)
        mark = deployment.event_count()
        deployment.kill_replica("reference-0")
        exited = deployment.wait_event("Exited", "reference-0", since=mark, timeout_s=30)
        ready = deployment.wait_event("Ready", "reference-0", since=mark, timeout_s=READY_TIMEOUT_S)
    finally:
        stop.set()
        sender.join(timeout=30)

    while_down = [a for a in answers if exited.mono_s < a[0] < ready.mono_s]
    failures = [a for a in answers if a[1] != 200]
    assert len(while_down) >= 5
    assert {(status, replica) for _, status, replica in while_down} == {(200, "reference-1")}
    assert len(failures) <= 1, failures  # at most the one request in flight on the killed replica


def test_single_with_no_ready_replica_answers_503_at_once(deploy_local, stub_spec):
    # a replica that exits at once never becomes Ready
    deployment = deploy_local(stub_spec(), command=[sys.executable, "-c", "raise SystemExit(1)"])
    deployment.wait_event("Exited", "reference-0", timeout_s=30)
    started = time.monotonic()
    status, payload = request_json("POST", deployment.endpoint + "/v2/models/ranker-mlp/infer", {"inputs": []})
    assert (status, payload) == (503, {"error": "no ready endpoints"})
    assert time.monotonic() - started < 1.0
    assert deployment.balancer_stats()["no_ready"] == 1


def test_active_standby_sends_to_the_primary_and_fails_over_to_the_standby(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(topology="active-standby"), command=stub_command)
    deployment.wait_ready(timeout_s=30)

    def replica_answering() -> str | None:
        import urllib.request

        with urllib.request.urlopen(deployment.endpoint + "/", timeout=5) as response:
            return response.headers.get("x-harness-replica")

    def answered_by(replica: str) -> bool:  # the balancer hears of a change a moment after the event
        deadline = time.monotonic() + 10
        while {replica_answering() for _ in range(5)} != {replica}:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    assert answered_by("reference-0")
    mark = deployment.event_count()
    deployment.kill_replica("reference-0")
    deployment.wait_event("NotReady", "reference-0", since=mark, timeout_s=30)
    assert answered_by("reference-1")
    deployment.wait_event("Ready", "reference-0", since=mark, timeout_s=30)
    assert answered_by("reference-0")  # back to the primary


@pytest.fixture
def standalone_balancer(stub_command, tmp_path):
    """Return a function starting the balancer process with given backends; all are stopped afterwards."""
    processes: list[subprocess.Popen] = []

    def start(backends: list[dict], *flags: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.platforms.local.balancer", "--topology", "multi-active", *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        processes.append(process)
        port = json.loads(process.stdout.readline())["port"]
        process.stdin.write((json.dumps({"backends": backends}) + "\n").encode())
        process.stdin.flush()
        return f"http://127.0.0.1:{port}"

    stub_port = free_port()
    stub = subprocess.Popen([part.replace("{port}", str(stub_port)) for part in stub_command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    processes.append(stub)
    deadline = time.monotonic() + 30
    while True:
        try:
            request_json("GET", f"http://127.0.0.1:{stub_port}/", timeout_s=1)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    start.stub_port = stub_port  # type: ignore[attr-defined]
    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


@pytest.mark.parametrize("retry", [False, True])
def test_connect_error_is_retried_on_another_replica_only_when_enabled(standalone_balancer, retry):
    dead = {"name": "dead", "host": "127.0.0.1", "port": free_port(), "ready": True}  # nothing listens there
    alive = {"name": "alive", "host": "127.0.0.1", "port": standalone_balancer.stub_port, "ready": True}
    endpoint = standalone_balancer([dead, alive], *(["--retry-on-connect-error"] if retry else []))
    time.sleep(0.2)  # let the balancer read its backends
    statuses = [request_json("GET", endpoint + "/", timeout_s=5)[0] for _ in range(10)]
    stats = request_json("GET", endpoint + "/_balancer/stats")[1]
    if retry:
        assert statuses == [200] * 10 and stats["retries"] >= 1
    else:
        assert statuses.count(502) >= 1 and statuses.count(200) >= 1 and stats["retries"] == 0
    assert next(b for b in stats["backends"] if b["name"] == "dead")["connect_errors"] >= 1
