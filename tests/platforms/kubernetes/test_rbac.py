"""The runner's Role grants exactly what the chaos experiments and the attached deployment call.

The chaostoolkit-kubernetes activities and `KubernetesDeployment` run against the recording fake API
server; the verbs the API server would have to authorise are derived from the requests it saw, and
must equal `RUNNER_RULES`: a missing rule would fail in the cluster, an extra one is privilege the
runner does not need.
"""

from __future__ import annotations

import importlib
import inspect
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
SELECTOR = f"app.kubernetes.io/name={NAME},app.kubernetes.io/component=inference"
EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"
# modules whose activities call the Kubernetes API; a Kubernetes experiment may use no other python module
API_MODULES = ("chaosk8s.", "harness.chaos.kubernetes_activities")

# How each listed activity is called in the experiments of experiments/kubernetes/ (the service
# rendered as NAME in NS), so that the test makes the calls the experiments make.
ACTIVITY_ARGUMENTS = {
    "chaosk8s.pod.actions.terminate_pods": {"label_selector": SELECTOR, "ns": NS, "qty": 1, "grace_period": 0},
    "chaosk8s.pod.probes.pods_in_conditions": {"label_selector": SELECTOR, "ns": NS, "conditions": [{"type": "Ready", "status": "True"}]},
    "chaosk8s.deployment.probes.deployment_available_and_healthy": {"name": NAME, "ns": NS},
    "harness.chaos.kubernetes_activities.set_startup_delay": {
        "name": NAME, "ns": NS, "delay_s": 120, "live_during_load": False,
        "startup_probe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10, "failureThreshold": 30},
    },
    "harness.chaos.kubernetes_activities.restore_deployment": {"name": NAME, "ns": NS},
    "harness.chaos.kubernetes_activities.wait_for_crash_loop": {"label_selector": SELECTOR, "ns": NS, "min_restarts": 2, "timeout_s": 5},
}


def _deployed(cluster) -> None:
    client = KubernetesClient()
    try:
        client.apply(render_manifests(ServiceSpec(topology="multi-active", replicas=2), RenderOptions(namespace=NS)))
    finally:
        client.close()
    cluster.requests.clear()  # the operator applied the service; only what follows is the runner's


def _set_pods(cluster, crash_loop_first: bool) -> None:
    """Make every pod Ready, or the first one wait in CrashLoopBackOff (so `wait_for_crash_loop` returns)."""
    for index, pod in enumerate(cluster.pod_names(NS)):
        if crash_loop_first and index == 0:
            cluster.set_container(NS, pod, ready=False, restartCount=3, state={"waiting": {"reason": "CrashLoopBackOff"}},
                                  lastState={"terminated": {"reason": "Error", "exitCode": 1}})
        else:
            cluster.set_container(NS, pod, ready=True, state={"running": {"startedAt": "2026-01-01T00:00:00Z"}})


def _call_activity(qualified: str) -> object:
    module_name, func_name = qualified.rsplit(".", 1)
    func = getattr(importlib.import_module(module_name), func_name)
    return func(**ACTIVITY_ARGUMENTS[qualified])


def _experiment_activities(root: Path) -> list[tuple[Path, dict]]:
    """Return (file, provider) for every activity of every experiment file under ``root``, recursively."""
    found = []
    for path in sorted(root.rglob("*.json")) + sorted(root.rglob("*.yaml")) + sorted(root.rglob("*.yml")):
        text = path.read_text(encoding="utf-8")
        experiment = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(experiment, dict) or "method" not in experiment:
            continue  # not an experiment (e.g. a settings or journal file)
        activities = list(experiment.get("method") or []) + list(experiment.get("rollbacks") or [])
        activities += list((experiment.get("steady-state-hypothesis") or {}).get("probes") or [])
        for activity in activities:
            if isinstance(activity, dict) and isinstance(activity.get("provider"), dict):
                found.append((path, activity["provider"]))
    return found


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


def test_kubernetes_experiments_are_found():
    files = {path for path, _ in _experiment_activities(EXPERIMENTS / "kubernetes")}
    assert {"pod-kill.json", "slow-startup.json"} <= {path.name for path in files}


def test_kubernetes_experiments_call_the_api_only_through_listed_modules():
    others = sorted({f"{path.relative_to(EXPERIMENTS)}: {provider.get('module')}"
                     for path, provider in _experiment_activities(EXPERIMENTS / "kubernetes")
                     if provider.get("type") == "python" and not str(provider.get("module", "")).startswith(API_MODULES)})
    assert not others, f"a Kubernetes experiment calls a python module whose API calls this test does not check: {others}"


def test_experiment_files_use_exactly_the_listed_kubernetes_activities():
    used = {f"{provider['module']}.{provider['func']}" for _, provider in _experiment_activities(EXPERIMENTS)
            if provider.get("type") == "python" and str(provider.get("module", "")).startswith(API_MODULES)}
    listed = set(CHAOS_ACTIVITIES)
    assert used == listed, (
        f"add to rbac.CHAOS_ACTIVITIES (and the rules): {sorted(used - listed)}; listed but unused: {sorted(listed - used)}"
    )


def test_experiment_arguments_are_accepted_by_the_activities():
    for path, provider in _experiment_activities(EXPERIMENTS):
        qualified = f"{provider.get('module')}.{provider.get('func')}"
        if qualified not in ACTIVITY_ARGUMENTS:
            continue
        func = getattr(importlib.import_module(provider["module"]), provider["func"])
        accepted = set(inspect.signature(func).parameters)
        assert set(provider.get("arguments") or {}) <= accepted, f"{path.name}: {qualified}"
        assert set(ACTIVITY_ARGUMENTS[qualified]) <= accepted, qualified


def test_role_is_exactly_what_chaos_and_the_attached_deployment_call(fake_apiserver, tmp_path):
    _deployed(fake_apiserver)
    needed_by: dict[str, set[Rule]] = {}
    chaos_requests = []
    for activity in CHAOS_ACTIVITIES:
        _set_pods(fake_apiserver, crash_loop_first=activity.endswith(".wait_for_crash_loop"))  # so each succeeds
        fake_apiserver.requests.clear()
        assert _call_activity(activity) is not False, activity  # probes answer True when they hold
        needed_by[activity] = rules_for_requests(fake_apiserver.requests)
        assert needed_by[activity], f"{activity} made no API request"
        chaos_requests += fake_apiserver.requests
    _set_pods(fake_apiserver, crash_loop_first=False)
    fake_apiserver.requests.clear()
    assert needed_by["chaosk8s.deployment.probes.deployment_available_and_healthy"] == {Rule("apps", "deployments", "list")}

    spec = ServiceSpec(topology="multi-active", replicas=2)
    with deploy_kubernetes(spec, namespace=NS, workdir=tmp_path, apply=False, timeout_s=10) as deployment:
        victim = deployment.replicas()[0].name
        deployment.kill_replica(victim, signal.SIGKILL)
        deployment.wait_ready(timeout_s=10)
        deployment.events()
    attach_requests = list(fake_apiserver.requests)

    needed = rules_for_requests(chaos_requests) | rules_for_requests(attach_requests)
    by_activity = {str(rule): sorted(a for a, rules in needed_by.items() if rule in rules) for rule in needed}
    assert needed == set(RUNNER_RULES), (
        f"missing: {sorted(needed - set(RUNNER_RULES))}; not needed: {sorted(set(RUNNER_RULES) - needed)}; "
        f"needed by: {by_activity}"
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


def test_readme_rbac_table_lists_the_role():
    readme = (EXPERIMENTS.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("| API group | resource | verbs |", 1)[1].split("\n\n", 1)[0]
    listed = set()
    for row in table.strip().splitlines()[1:]:  # after the |---| line
        group, resource, verbs = (cell.strip() for cell in row.strip().strip("|").split("|"))
        group = "" if group.startswith('""') else group
        listed |= {Rule(group, resource, verb.strip()) for verb in verbs.split(",")}
    assert listed == set(RUNNER_RULES)
