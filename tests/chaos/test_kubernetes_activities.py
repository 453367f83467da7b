"""The Kubernetes-only chaos activities against the recording fake API server: what they change,
and that they need nothing beyond the runner's Role."""

from __future__ import annotations

import pytest

from harness.chaos import kubernetes_activities as k8s
from harness.config import ServiceSpec
from harness.platforms.kubernetes import KubernetesClient, RenderOptions, render_manifests
from harness.platforms.kubernetes.rbac import RUNNER_RULES, rules_for_requests

NS = "chaos"
NAME = "reference"
SELECTOR = f"app.kubernetes.io/name={NAME},app.kubernetes.io/component=inference"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"


@pytest.fixture()
def cluster(fake_apiserver):
    client = KubernetesClient()
    try:
        client.apply(render_manifests(ServiceSpec(topology="multi-active", replicas=2), RenderOptions(namespace=NS)))
    finally:
        client.close()
    fake_apiserver.requests.clear()
    return fake_apiserver


def _container(cluster):
    return cluster.objects[DEPLOYMENT_PATH]["spec"]["template"]["spec"]["containers"][0]


def test_a_slow_start_is_rolled_out_and_rolled_back_with_get_and_patch_only(cluster):
    original = list(_container(cluster)["args"])
    out = k8s.set_startup_delay(NAME, NS, delay_s=120, live_during_load=False)
    args = _container(cluster)["args"]
    assert args[-3:] == ["--startup-delay-s", "120", "--no-live-during-load"] and out["args"] == args
    assert "--live-during-load" not in args
    assert k8s.ORIGINAL_ANNOTATION in cluster.objects[DEPLOYMENT_PATH]["metadata"]["annotations"]

    # a second roll-out keeps the first saved container (the rollback restores the real original)
    k8s.set_startup_delay(NAME, NS, delay_s=60, startup_probe={"httpGet": {"path": "/v2/health/live", "port": "http"}})
    assert _container(cluster)["startupProbe"]["httpGet"]["path"] == "/v2/health/live"

    assert k8s.restore_deployment(NAME, NS)["restored"] is True
    assert _container(cluster)["args"] == original
    assert not cluster.objects[DEPLOYMENT_PATH]["metadata"]["annotations"].get(k8s.ORIGINAL_ANNOTATION)
    assert k8s.restore_deployment(NAME, NS) == {"deployment": NAME, "restored": False}
    assert rules_for_requests(cluster.requests) <= set(RUNNER_RULES)


def test_a_crash_loop_is_waited_for_and_described(cluster):
    pod = cluster.pod_names(NS)[0]
    cluster.set_container(NS, pod, restartCount=3, ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}},
                          lastState={"terminated": {"reason": "Error", "exitCode": 1}})
    found = k8s.wait_for_crash_loop(SELECTOR, NS, min_restarts=2, timeout_s=5)
    assert found == [{"pod": pod, "restarts": 3, "last_reason": "Error", "last_exit_code": 1}]
    assert rules_for_requests(cluster.requests) <= set(RUNNER_RULES)


def test_no_crash_loop_fails_with_what_was_seen(cluster):
    from chaoslib.exceptions import ActivityFailed

    with pytest.raises(ActivityFailed, match="no pod in CrashLoopBackOff after 0.1s .*running, restarts=0"):
        k8s.wait_for_crash_loop(SELECTOR, NS, timeout_s=0.1)


def test_a_missing_deployment_is_an_activity_failure(cluster):
    from chaoslib.exceptions import ActivityFailed

    with pytest.raises(ActivityFailed, match="reading deployment chaos/absent: 404"):
        k8s.set_startup_delay("absent", NS)


def test_the_kubernetes_experiments_need_no_permission_beyond_the_runner_role(cluster):
    """Every python activity of experiments/kubernetes/ runs against the fake; the API calls they make
    need nothing beyond the runner's Role."""
    import importlib
    import json

    from chaoslib import substitute
    from chaoslib.exceptions import ActivityFailed
    from kubernetes.client.rest import ApiException

    from .helpers import ROOT

    configuration = {"ns": NS, "deployment": NAME}
    called = set()
    for path in sorted((ROOT / "experiments" / "kubernetes").glob("*.json")):
        experiment = json.loads(path.read_text())
        activities = experiment["steady-state-hypothesis"]["probes"] + experiment["method"] + experiment["rollbacks"]
        for activity in activities:
            provider = activity["provider"]
            if provider["type"] != "python":
                continue
            arguments = substitute(provider.get("arguments", {}), configuration, {})
            if "timeout_s" in arguments:
                arguments["timeout_s"] = 0.1
            func = getattr(importlib.import_module(provider["module"]), provider["func"])
            try:
                func(**arguments)
            except (ActivityFailed, ApiException):
                pass  # a probe whose condition the fake does not meet (no crash loop) still made its calls
            called.add(f"{provider['module']}.{provider['func']}")
    assert "chaosk8s.pod.actions.terminate_pods" in called and "harness.chaos.kubernetes_activities.set_startup_delay" in called
    needed = rules_for_requests(cluster.requests)
    assert needed <= set(RUNNER_RULES)
