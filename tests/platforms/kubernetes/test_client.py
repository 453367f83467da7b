"""The Kubernetes client and deployment against a recording fake API server (the real client library,
real HTTP on loopback): apply, rollout, pods as replicas, pod kill, events, delete, error translation."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from harness.config import ServiceSpec
from harness.errors import DeploymentError, PlatformUnavailable
from harness.platforms.base import EXITED, KILLING, NOT_READY, OOM_KILLED, READY, RECOVERED, SCHEDULED, STARTED, UNHEALTHY, Deployment, read_state
from harness.platforms.kubernetes import KubernetesClient, RenderOptions, deploy_kubernetes, render_manifests
from harness.platforms.kubernetes.client import resource_path

NS = "harness-test"


def _deploy(tmp_path: Path, topology: str = "multi-active", replicas: int = 2, **kwargs):
    spec = ServiceSpec(topology=topology, replicas=replicas)
    return deploy_kubernetes(spec, namespace=NS, image="example.org/harness:1.0-cpu", workdir=tmp_path / "work", timeout_s=10, **kwargs)


def test_no_kubeconfig_is_platform_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PlatformUnavailable, match="no Kubernetes cluster configured"):
        KubernetesClient()


def test_unreachable_server_is_platform_unavailable(fake_apiserver, tmp_path):
    bad = tmp_path / "kubeconfig-bad"
    # port 1 on loopback: nothing listens there, the connection is refused at once
    bad.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    client = KubernetesClient(config_file=bad, request_timeout_s=2)
    try:
        client.api.configuration.retries = 0
        with pytest.raises(PlatformUnavailable, match="cannot reach the Kubernetes API"):
            client.server_version()
    finally:
        client.close()


def test_apply_uses_server_side_apply_for_every_object(fake_apiserver):
    objects = render_manifests(ServiceSpec(topology="multi-active", replicas=2), RenderOptions(namespace=NS, runner=True, schedule="@daily"))
    client = KubernetesClient()
    try:
        assert client.server_version() == "v1.31.0-fake"
        applied = client.apply(objects)
    finally:
        client.close()
    assert len(applied) == len(objects)
    patches = [url for method, url in fake_apiserver.requests if method == "PATCH"]
    assert [url.split("?")[0] for url in patches] == [resource_path(obj) for obj in objects]
    assert all("fieldManager=harness" in url and "force=true" in url for url in patches)
    assert sorted(fake_apiserver.objects) == sorted(resource_path(obj) for obj in objects)


def test_deploy_rolls_out_and_reports_replicas(fake_apiserver, tmp_path):
    with _deploy(tmp_path) as deployment:
        assert isinstance(deployment, Deployment)
        rows = deployment.replicas()
        assert len(rows) == 2 and all(row.ready and row.state == "Running" for row in rows)
        assert deployment.endpoint == f"http://reference.{NS}.svc.cluster.local:8000"
        state = read_state(deployment.state_path)
        assert state["platform"] == "kubernetes" and [r["name"] for r in state["replicas"]] == [r.name for r in rows]
    # close() deleted what it applied, except the namespace
    assert fake_apiserver.pod_names(NS) == []
    assert [path for path in fake_apiserver.objects] == ["/api/v1/namespaces/harness-test"]


def test_kill_replica_deletes_the_pod_and_a_replacement_becomes_ready(fake_apiserver, tmp_path):
    with _deploy(tmp_path) as deployment:
        victim = deployment.replicas()[0].name
        assert deployment.kill_replica(victim, signal.SIGKILL) == 0
        assert ("DELETE", f"/api/v1/namespaces/{NS}/pods/{victim}") in fake_apiserver.requests
        deployment.wait_ready(timeout_s=10)
        names = [row.name for row in deployment.replicas()]
        assert victim not in names and len(names) == 2
        assert deployment.kill_replica(names[0], signal.SIGTERM) == 30  # the pod's grace period
        events = deployment.events()
    types = [event.type for event in events]
    assert types.count(KILLING) >= 2 and SCHEDULED in types and STARTED in types


def test_kill_unknown_replica_names_the_known_ones(fake_apiserver, tmp_path):
    with _deploy(tmp_path, topology="single", replicas=1) as deployment:
        known = deployment.replicas()[0].name
        with pytest.raises(DeploymentError, match=f"no replica 'nope'.*{known}"):
            deployment.kill_replica("nope")


def test_replica_transitions_become_events(fake_apiserver, tmp_path):
    with _deploy(tmp_path, topology="single", replicas=1) as deployment:
        name = deployment.replicas()[0].name
        fake_apiserver.set_container(NS, name, ready=False, restartCount=1,
                                     lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
        fake_apiserver.add_event(NS, "Pod", name, "Unhealthy", "Readiness probe failed: connection refused")
        row = deployment.replicas()[0]
        assert (row.ready, row.restarts, row.last_exit_code, row.last_reason) == (False, 1, 137, "OOMKilled")
        fake_apiserver.set_container(NS, name, ready=True, restartCount=2,
                                     lastState={"terminated": {"exitCode": 1, "reason": "Error"}})
        deployment.replicas()
        events = deployment.events()
    by_type = {event.type: event for event in events}
    assert by_type[OOM_KILLED].exit_code == 137 and by_type[OOM_KILLED].replica == name
    assert by_type[EXITED].exit_code == 1
    assert by_type[UNHEALTHY].extra["probe"] == "readiness"
    assert READY in by_type and by_type[RECOVERED].extra["down_s"] >= 0
    assert [e.time_s for e in events] == sorted(e.time_s for e in events)


def test_rollout_timeout_says_how_far_it_got(fake_apiserver, tmp_path):
    spec = ServiceSpec(topology="single")
    objects = render_manifests(spec, RenderOptions(namespace=NS))
    client = KubernetesClient()
    try:
        client.apply(objects)
        with fake_apiserver.lock:
            fake_apiserver.objects[resource_path(objects[2])]["status"]["availableReplicas"] = 0
        with pytest.raises(DeploymentError, match="0 of 1 updated replicas available"):
            client.wait_rollout(NS, spec.name, timeout_s=0.5, poll_s=0.1)
    finally:
        client.close()


def test_attached_deployment_deletes_nothing(fake_apiserver, tmp_path):
    spec = ServiceSpec(topology="multi-active", replicas=2)
    client = KubernetesClient()
    client.apply(render_manifests(spec, RenderOptions(namespace=NS)))
    client.close()
    before = len(fake_apiserver.objects)
    with _deploy(tmp_path, apply=False) as deployment:
        assert len(deployment.replicas()) == 2
    assert len(fake_apiserver.objects) == before
    assert not [m for m, _ in fake_apiserver.requests if m in ("POST", "PUT")]


def test_missing_deployment_when_attaching_is_a_deployment_error(fake_apiserver, tmp_path):
    with pytest.raises(DeploymentError, match="HTTP 404"):
        _deploy(tmp_path, apply=False)


def _wait_for_types(deployment, wanted: set[str], timeout_s: float = 5.0) -> list[str]:
    from harness.platforms.base import read_events

    deadline = time.monotonic() + timeout_s
    while True:
        types = [event.type for event in read_events(deployment.events_path)]
        if wanted <= set(types) or time.monotonic() >= deadline:
            return types
        time.sleep(0.05)


def test_watcher_records_transitions_without_anyone_reading_the_pods(fake_apiserver, tmp_path):
    with _deploy(tmp_path, topology="single", replicas=1, watch_interval_s=0.05) as deployment:
        name = deployment.replicas()[0].name
        fake_apiserver.set_container(NS, name, ready=False, restartCount=1,
                                     lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
        types = _wait_for_types(deployment, {NOT_READY, OOM_KILLED})
        assert {NOT_READY, OOM_KILLED} <= set(types), types
        fake_apiserver.set_container(NS, name, ready=True, restartCount=1)
        types = _wait_for_types(deployment, {READY, RECOVERED})
        assert types.index(NOT_READY) < types.index(RECOVERED), types
        assert deployment.watch_errors == []


def test_watcher_keeps_a_failed_read_and_goes_on(fake_apiserver, tmp_path, monkeypatch):
    with _deploy(tmp_path, topology="single", replicas=1, watch_interval_s=None) as deployment:
        name = deployment.replicas()[0].name
        real, calls = deployment.client.list_pods, []

        def flaky(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise DeploymentError("list pods: HTTP 503 (apiserver restarting)")
            if len(calls) == 2:  # not a harness error (a pod the decoder chokes on): the watcher goes on too
                raise ValueError("unexpected pod status")
            return real(*args, **kwargs)

        monkeypatch.setattr(deployment.client, "list_pods", flaky)
        deployment.watch(0.05)
        fake_apiserver.set_container(NS, name, ready=False)
        types = _wait_for_types(deployment, {NOT_READY})
        assert NOT_READY in types
        assert len(deployment.watch_errors) == 2 and "HTTP 503" in deployment.watch_errors[0]
        assert "ValueError: unexpected pod status" in deployment.watch_errors[1]


def test_clear_faults_without_a_token_says_there_is_none_here(fake_apiserver, tmp_path, monkeypatch):
    import harness.service.client as service_client

    monkeypatch.setattr(service_client, "clear_faults", lambda *a, **k: pytest.fail("no token: nothing to clear"))
    with _deploy(tmp_path, watch_interval_s=None) as deployment:
        deployment.fault_token = ""
        outcome = deployment.clear_faults()
        assert outcome == {row.name: "no fault token here (HARNESS_FAULT_TOKEN unset)" for row in deployment.replicas()}


def test_clear_faults_calls_each_pod_directly_and_reports_each(fake_apiserver, tmp_path, monkeypatch):
    import harness.service.client as service_client
    from harness.service.client import ServiceUnreachable

    with _deploy(tmp_path, watch_interval_s=None) as deployment:
        deployment.fault_token = "s3cret"
        first, second = deployment.replicas()
        called = []

        def fake_clear(url, token):
            called.append((url, token))
            if url == second.url:
                raise ServiceUnreachable(f"{url}: connection refused")

        monkeypatch.setattr(service_client, "clear_faults", fake_clear)
        outcome = deployment.clear_faults()
    assert called == [(first.url, "s3cret"), (second.url, "s3cret")]
    assert outcome[first.name] == "cleared"
    assert outcome[second.name].startswith("not reachable (") and "connection refused" in outcome[second.name]
