"""The runner's Role grants exactly what the chaos experiments and the attached deployment call.

The chaostoolkit-kubernetes activities and `KubernetesDeployment` run against the recording fake API
server; the verbs the API server would have to authorise are derived from the requests it saw, and
must equal `RUNNER_RULES`: a missing rule would fail in the cluster, an extra one is privilege the
runner does not need.
"""

from __future__ import annotations

import importlib
import json
import re
import signal
from pathlib import Path

import pytest
import yaml

from harness.config import ServiceSpec
from harness.platforms.kubernetes import KubernetesClient, RenderOptions, deploy_kubernetes, render_manifests
from harness.platforms.kubernetes.rbac import ATTACH_CALLS, CHAOS_ACTIVITIES, RUNNER_RULES, Rule, role_rules, rule_for_request, rules_for_requests

NS = "chaos"
NAME = "reference"
EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"

# How each listed activity is called in an experiment against the rendered service.
ACTIVITY_ARGUMENTS = {
    "chaosk8s.pod.actions.terminate_pods": {"label_selector": f"app.kubernetes.io/name={NAME}", "ns": NS, "qty": 1, "grace_period": 0},
    "chaosk8s.deployment.actions.scale_deployment": {"name": NAME, "replicas": 3, "ns": NS},
}


def _deployed(cluster) -> None:
    client = KubernetesClient()
    try:
        client.apply(render_manifests(ServiceSpec(topology="multi-active", replicas=2), RenderOptions(namespace=NS)))
    finally:
        client.close()
    cluster.requests.clear()  # the operator applied the service; only what follows is the runner's


def _call_activity(qualified: str) -> None:
    module_name, func_name = qualified.rsplit(".", 1)
    func = getattr(importlib.import_module(module_name), func_name)
    func(**ACTIVITY_ARGUMENTS[qualified])


def test_rules_for_requests_maps_paths_to_verbs():
    assert rule_for_request("GET", "/api/v1/namespaces/x/pods?labelSelector=a%3Db") == Rule("", "pods", "list")
    assert rule_for_request("GET", "/api/v1/namespaces/x/pods/p1") == Rule("", "pods", "get")
    assert rule_for_request("GET", "/api/v1/namespaces/x/pods/p1/log") == Rule("", "pods/log", "get")
    assert rule_for_request("PATCH", "/apis/apps/v1/namespaces/x/deployments/d") == Rule("apps", "deployments", "patch")
    assert rule_for_request("GET", "/api/v1/events") == Rule("", "events*cluster*", "list")
    assert rule_for_request("GET", "/version") is None
    assert rules_for_requests([("GET", "/api/v1/namespaces/x/pods?watch=true")]) == {Rule("", "pods", "watch")}


def test_every_listed_activity_has_call_arguments():
    assert sorted(ACTIVITY_ARGUMENTS) == sorted(CHAOS_ACTIVITIES)


def test_experiment_files_use_only_listed_kubernetes_activities():
    used = set()
    for path in sorted(EXPERIMENTS.glob("*.json")) + sorted(EXPERIMENTS.glob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        experiment = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        activities = list(experiment.get("method", [])) + list(experiment.get("rollbacks", []))
        activities += list((experiment.get("steady-state-hypothesis") or {}).get("probes", []))
        for activity in activities:
            provider = activity.get("provider", {}) if isinstance(activity, dict) else {}
            module = provider.get("module", "")
            if module.startswith("chaosk8s"):
                used.add(f"{module}.{provider['func']}")
    assert used <= set(CHAOS_ACTIVITIES), f"add to rbac.CHAOS_ACTIVITIES (and the rules) : {sorted(used - set(CHAOS_ACTIVITIES))}"


def test_role_is_exactly_what_chaos_and_the_attached_deployment_call(fake_apiserver, tmp_path):
    _deployed(fake_apiserver)
    for activity in CHAOS_ACTIVITIES:
        _call_activity(activity)
    chaos_requests = list(fake_apiserver.requests)
    fake_apiserver.requests.clear()
    assert {m for m, _ in chaos_requests} == {"GET", "DELETE", "PATCH"}  # the activities really ran

    spec = ServiceSpec(topology="multi-active", replicas=3)  # scaled to 3 by the activity above
    with deploy_kubernetes(spec, namespace=NS, workdir=tmp_path, apply=False, timeout_s=10) as deployment:
        victim = deployment.replicas()[0].name
        deployment.kill_replica(victim, signal.SIGKILL)
        deployment.wait_ready(timeout_s=10)
        deployment.events()
    attach_requests = list(fake_apiserver.requests)

    needed = rules_for_requests(chaos_requests) | rules_for_requests(attach_requests)
    assert needed == set(RUNNER_RULES), (
        f"missing: {sorted(needed - set(RUNNER_RULES))}; not needed: {sorted(set(RUNNER_RULES) - needed)}"
    )
    assert _rules_from_call_names(ATTACH_CALLS) == rules_for_requests(attach_requests)


def _rules_from_call_names(calls: tuple[str, ...]) -> set[Rule]:
    groups = {"CoreV1Api": "", "AppsV1Api": "apps"}
    verbs = {"read": "get", "list": "list", "delete": "delete", "patch": "patch"}
    rules = set()
    for call in calls:
        api, method = call.split(".")
        match = re.fullmatch(r"(read|list|delete|patch)_namespaced_(\w+)", method)
        assert match, call
        rules.add(Rule(groups[api], match.group(2) + "s", verbs[match.group(1)]))
    return rules


def test_role_manifest_renders_the_rules_and_nothing_else():
    objects = render_manifests(ServiceSpec(), RenderOptions(runner=True))
    role = next(obj for obj in objects if obj["kind"] == "Role")
    granted = {Rule(rule["apiGroups"][0], rule["resources"][0], verb) for rule in role["rules"] for verb in rule["verbs"]}
    assert granted == set(RUNNER_RULES)
    assert role["rules"] == role_rules()
    assert all(len(rule["apiGroups"]) == 1 and len(rule["resources"]) == 1 and "*" not in rule["verbs"] for rule in role["rules"])
    kinds = {obj["kind"] for obj in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds


@pytest.mark.parametrize("forbidden", [Rule("", "secrets", "get"), Rule("", "pods/exec", "create"), Rule("apps", "deployments", "create")])
def test_no_dangerous_permission_is_granted(forbidden):
    assert forbidden not in RUNNER_RULES
