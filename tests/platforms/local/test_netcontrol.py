"""Network faults through the deployment: the control channel's operations (validated, recorded as
events, timed out by themselves), the chaos activities against a real local deployment of stub
replicas, and the four experiment files' methods run through chaoslib against it."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import time
from urllib.parse import urlsplit

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.chaos import network_activities as net
from harness.chaos.experiment import ENV_STATE_FILE, load_experiment
from harness.chaos.toolkit import run_experiment
from harness.errors import ConfigError, DeploymentError
from harness.platforms.base import read_events, read_state
from harness.platforms.local.control import ControlServer, send_control
from harness.platforms.local.eventlog import EventLog
from harness.platforms.local.netcontrol import NetworkFaultControl

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
NETWORK_EXPERIMENTS = ("network-latency", "network-abort", "network-reset", "replica-partition")


class _Supervisor:
    """A NetworkFaultControl behind a real control channel, with the balancer's lines kept in ``sent``."""

    def __init__(self, tmp_path, fail_send: bool = False) -> None:
        self.sent: list[dict] = []
        self.changes = 0
        self.events = EventLog(tmp_path / "events.jsonl")
        self.fail_send = fail_send

    def send(self, message: dict) -> None:
        if self.fail_send:
            raise DeploymentError("the front balancer is not running")
        self.sent.append(message)

    def on_change(self) -> None:
        self.changes += 1

    async def __aenter__(self) -> "_Supervisor":
        self.network = NetworkFaultControl(self.send, self.events, lambda: ["reference-0", "reference-1"], self.on_change)
        self.server = ControlServer("t0ken", self.network.ops)
        self.state = {"control": {"port": await self.server.start()}, "fault_token": "t0ken"}
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.close()
        self.events.close()

    async def call(self, op: str, **fields):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: send_control(self.state, op, **fields))


def test_a_fault_is_sent_to_the_balancer_recorded_and_ends_by_itself(tmp_path):
    async def scenario() -> None:
        async with _Supervisor(tmp_path) as sup:
            answer = await sup.call("network_fault", kind="abort", percent=20, status=503, duration_s=0.3, seed=4)
            fault = answer["fault"]
            assert (fault["id"], fault["kind"], fault["percent"], fault["status"], fault["seed"]) == ("abort-1", "abort", 20.0, 503, 4)
            assert fault["expires_at_s"] == pytest.approx(fault["time_s"] + 0.3)
            assert sup.sent == [{"fault": {"kind": "abort", "duration_s": 0.3, "percent": 20.0, "status": 503, "seed": 4,
                                           "id": "abort-1"}}]
            assert [f["id"] for f in sup.network.status()] == ["abort-1"]
            await asyncio.sleep(0.45)
            assert sup.network.status() == [] and len(sup.sent) == 1  # the balancer ends it on its own clock
            injected, cleared = sup.events.snapshot()
            assert (injected.type, injected.replica, injected.extra["fault_id"], injected.extra["percent"]) == (
                "NetworkFaultInjected", None, "abort-1", 20.0)
            assert injected.message == "abort 20% of requests with 503 for 0.3 s"
            assert (cleared.type, cleared.reason, cleared.extra["fault_id"]) == ("NetworkFaultCleared", "Expired", "abort-1")
            assert 0.25 <= cleared.time_s - injected.time_s <= 0.4

    asyncio.run(scenario())


def test_clearing_replacing_and_teardown_each_record_why_the_fault_ended(tmp_path):
    async def scenario() -> None:
        async with _Supervisor(tmp_path) as sup:
            await sup.call("network_fault", kind="partition", replica="reference-0", duration_s=60)
            await sup.call("network_fault", kind="partition", replica="reference-0", duration_s=60)
            await sup.call("network_fault", kind="partition", replica="reference-1", duration_s=60)
            await sup.call("network_fault", kind="latency", delay_ms=5, duration_s=60)
            assert (await sup.call("clear_network_faults", kind="partition", replica="reference-1"))["cleared"] == ["partition-3"]
            assert (await sup.call("clear_network_faults", kind="reset"))["cleared"] == []
            assert sup.sent[-1] == {"clear_faults": ["partition-3"]}
            sup.network.stop()
            ends = [(e.reason, e.extra["fault_id"], e.replica) for e in sup.events.snapshot() if e.type == "NetworkFaultCleared"]
            assert ends == [("Replaced", "partition-1", "reference-0"), ("Cleared", "partition-3", "reference-1"),
                            ("TornDown", "partition-2", "reference-0"), ("TornDown", "latency-4", None)]
            assert sup.network.status() == []

    asyncio.run(scenario())


_BAD = [
    ("network_fault", {}, "kind"),
    ("network_fault", {"kind": "flood", "duration_s": 5}, "kind"),
    ("network_fault", {"kind": "abort"}, "duration_s"),
    ("network_fault", {"kind": "abort", "duration_s": -2}, "duration_s"),
    ("network_fault", {"kind": "abort", "duration_s": math.inf}, "duration_s"),
    ("network_fault", {"kind": "abort", "duration_s": 5, "percent": "20%"}, "percent"),
    ("network_fault", {"kind": "abort", "duration_s": 5, "status": 99}, "status"),
    ("network_fault", {"kind": "latency", "duration_s": 5, "delay_ms": None}, "delay_ms"),
    ("network_fault", {"kind": "latency", "duration_s": 5, "delay_ms": 5, "bogus": 1}, "bogus"),
    ("network_fault", {"kind": "partition", "duration_s": 5, "replica": "reference-9"}, "replica"),
    ("network_fault", {"kind": "abort", "duration_s": 5, "id": "mine"}, "id"),
    ("clear_network_faults", {"kind": "flood"}, "kind"),
    ("clear_network_faults", {"replica": 3}, "replica"),
    ("clear_network_faults", {"everything": True}, "everything"),
]


def test_bad_values_over_the_control_channel_are_one_line_errors_and_the_channel_stays_up(tmp_path):
    async def scenario() -> None:
        async with _Supervisor(tmp_path) as sup:
            for op, fields, field in _BAD:
                with pytest.raises(ConfigError) as caught:
                    await sup.call(op, **fields)
                assert caught.value.field == field, (op, fields, str(caught.value))
                assert str(caught.value).startswith(f"{field}=") and "\n" not in str(caught.value)
            assert sup.sent == [] and sup.events.snapshot() == []  # nothing half-done
            assert (await sup.call("network_fault", kind="reset", duration_s=1))["fault"]["id"] == "reset-1"

    asyncio.run(scenario())


def test_a_balancer_that_cannot_be_told_leaves_no_fault_recorded(tmp_path):
    async def scenario() -> None:
        async with _Supervisor(tmp_path, fail_send=True) as sup:
            with pytest.raises(DeploymentError, match="not running"):
                await sup.call("network_fault", kind="reset", duration_s=1)
            assert sup.network.status() == [] and sup.events.snapshot() == []

    asyncio.run(scenario())


# ----- a real local deployment (stub replicas) --------------------------------------------------------


def _get(endpoint: str) -> tuple[int, dict[str, str]]:
    address = urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    except OSError:
        return 0, {}
    finally:
        connection.close()


@pytest.fixture
def stub_pair(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(topology="multi-active", replicas=2), command=stub_command)
    deployment.wait_ready(timeout_s=60)
    return deployment


def test_network_faults_through_the_activities_on_a_local_deployment(stub_pair):
    deployment, state_file = stub_pair, str(stub_pair.state_path)
    mark = deployment.event_count()

    fault = net.abort_requests(state_file, percent=100, status=429, duration_s=30)
    assert [_get(deployment.endpoint)[0] for _ in range(3)] == [429] * 3
    assert read_state(state_file)["network_faults"][0]["id"] == fault["id"]
    assert net.clear_network_faults(state_file) == {"cleared": [fault["id"]]}
    assert _get(deployment.endpoint)[0] == 200

    cut = net.partition_replica(state_file, "first-ready", duration_s=30)
    answers = [_get(deployment.endpoint) for _ in range(6)]
    other = next(name for name in ("reference-0", "reference-1") if name != cut["replica"])
    assert {(status, headers.get("x-harness-replica")) for status, headers in answers} == {(200, other)}
    net.clear_network_faults(state_file, kind="partition")

    net.reset_connections(state_file, percent=100, duration_s=0.4)
    assert _get(deployment.endpoint)[0] == 0
    assert net.wait_for_network_faults_to_end(state_file, timeout_s=10)["waited_s"] < 5
    assert _get(deployment.endpoint)[0] == 200

    with pytest.raises(ActivityFailed, match=r"^abort_requests: percent=150: must be a number"):
        net.abort_requests(state_file, percent=150)
    events = [e for e in deployment.events()[mark:] if e.type.startswith("NetworkFault")]
    assert [(e.type, e.reason, e.replica) for e in events] == [
        ("NetworkFaultInjected", "NetworkFaultInjected", None), ("NetworkFaultCleared", "Cleared", None),
        ("NetworkFaultInjected", "NetworkFaultInjected", cut["replica"]), ("NetworkFaultCleared", "Cleared", cut["replica"]),
        ("NetworkFaultInjected", "NetworkFaultInjected", None), ("NetworkFaultCleared", "Expired", None)]
    assert not [e for e in deployment.events()[mark:] if e.type in ("Killing", "Exited", "NotReady")]  # replicas untouched
    assert read_events(deployment.events_path)[-1].type == "NetworkFaultCleared"  # in events.jsonl too


@pytest.mark.parametrize("name", NETWORK_EXPERIMENTS)
def test_each_network_experiment_injects_waits_for_the_end_and_cleans_up(stub_pair, name, tmp_path):
    experiment = load_experiment(ROOT / "experiments" / f"{name}.json")
    document = experiment.run_document()
    document.pop("steady-state-hypothesis")  # it asks for inference, which the stub replicas do not serve
    document["method"][0]["provider"]["arguments"]["duration_s"] = 0.5
    started = time.time()
    journal = run_experiment(document, env={ENV_STATE_FILE: str(stub_pair.state_path)}, journal_path=tmp_path / "j.json")
    assert journal["status"] == "completed", json.dumps(journal["run"], default=str)[:1500]
    assert [run["status"] for run in journal["run"]] == ["succeeded"] * 4
    assert [run["status"] for run in journal["rollbacks"]] == ["succeeded"] * 2
    kinds = [(e.type, e.extra.get("kind")) for e in stub_pair.events() if e.type.startswith("NetworkFault") and e.time_s >= started]
    kind = {"network-latency": "latency", "network-abort": "abort", "network-reset": "reset"}.get(name, "partition")
    assert kinds == [("NetworkFaultInjected", kind), ("NetworkFaultCleared", kind)]
    assert read_state(stub_pair.state_path)["network_faults"] == []


def test_the_network_experiments_apply_to_every_kind_of_target():
    from harness.chaos.fit import target_kinds

    for name in NETWORK_EXPERIMENTS:
        experiment = load_experiment(ROOT / "experiments" / f"{name}.json")
        assert experiment.extension.targets == ["reference", "command", "endpoint"]
        kinds, skipped = target_kinds(experiment)
        assert kinds == ["reference", "command", "endpoint"]
        assert set(skipped) <= {"deployment"}  # a team's Kubernetes Deployment has no local balancer in front
        assert experiment.extension.platforms == ["local"]  # the balancer is the local platform's


def test_a_partition_targets_a_replica_by_readiness_alone_without_a_process(tmp_path, monkeypatch):
    """An endpoint target's one "replica" has no pid: first-ready still finds it (the fault acts in the balancer)."""
    state = {"platform": "local", "control": {"port": 1}, "fault_token": "t", "replicas": [
        {"name": "theirs-0", "ready": True, "pid": None, "url": "http://127.0.0.1:8080"}]}
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    sent = []
    monkeypatch.setattr("harness.platforms.local.control.send_control",
                        lambda st, op, **fields: sent.append((op, fields)) or {"fault": {**fields, "time_s": 1.0}})
    assert net.partition_replica(str(path), "first-ready", duration_s=2)["replica"] == "theirs-0"
    assert sent == [("network_fault", {"kind": "partition", "replica": "theirs-0", "duration_s": 2})]
    state["replicas"][0]["ready"] = False
    path.write_text(json.dumps(state))
    with pytest.raises(ActivityFailed, match="first-ready.*no replica to cut off"):
        net.partition_replica(str(path), "first-ready")
