"""Attaching to a team's own Deployment (a spec's ``deployment`` target) on the recording fake API server:
its replicas, port, probes and pods are read from it, never assumed; nothing of it is changed; the
calls it makes are `rbac.ATTACH_TARGET_CALLS`, within the runner's Role; what does not fit is one
ConfigError naming the field."""

from __future__ import annotations

import json
import re
import signal

import pytest

from harness.config import ServiceSpec
from harness.errors import ConfigError, DeploymentError
from harness.platforms import deploy
from harness.platforms.base import read_events
from harness.platforms.kubernetes import attach_deployment, render_manifests
from harness.platforms.kubernetes.attach import ATTACHED, NO_HOOKS
from harness.platforms.kubernetes.rbac import ATTACH_TARGET_CALLS, RUNNER_RULES, Rule, rules_for_requests
from harness.platforms.target import ENV_DEPLOYMENT, ENV_READY_PATH, ENV_SELECTOR, PlatformTarget
from harness.validation import validate_model

from .team_deployment import NAME, NEIGHBOUR, NS, add_team, writes


def _spec(**target) -> ServiceSpec:
    topology = target.pop("topology", "multi-active")
    return validate_model(ServiceSpec, {"topology": topology, "target": target})


def _attach(spec: ServiceSpec, workdir, **options):
    return attach_deployment(spec, namespace=NS, workdir=workdir, timeout_s=5, watch_interval_s=None, **options)


def test_attaching_reads_the_deployments_own_replicas_port_probes_and_pods_and_changes_nothing(fake_apiserver, tmp_path):
    add_team(fake_apiserver)
    before = json.dumps(fake_apiserver.objects, sort_keys=True)
    team_pods = [p for p in fake_apiserver.pod_names(NS) if p.startswith(f"{NAME}-")]
    deployment = _attach(_spec(deployment=NAME, service="team-llm-svc:80"), tmp_path)
    try:
        view = deployment.view
        assert (view.replicas, view.container, view.port, view.grace_period_s) == (2, "server", 8080, 45.0)
        assert view.selector == "app=team-llm" and view.ready_path == "/healthz"  # its own selector, its own path
        assert view.probes["readiness"] == {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5,
                                            "failureThreshold": 6}
        assert view.probes["liveness"]["httpGet"]["path"] == "/livez" and view.probes["liveness"]["timeoutSeconds"] == 3
        assert view.probes["startup"]["failureThreshold"] == 60
        assert deployment.endpoint == "http://team-llm-svc.team.svc.cluster.local:80"
        assert sorted(row.name for row in deployment.replicas()) == team_pods  # never the neighbour's pod
        # the run records what it ran under: the state file and the first event
        state = json.loads(deployment.state_path.read_text())
        assert state["deployment"] == NAME and state["attached"]["probes"] == view.probes
        first = read_events(deployment.events_path)[0]
        assert first.type == ATTACHED and first.extra["attached"]["probes"]["liveness"]["periodSeconds"] == 15
        # the Kubernetes experiments are pointed at its name, its pods and its readiness path
        env = PlatformTarget("kubernetes", namespace=NS).experiment_env(deployment)
        assert (env[ENV_DEPLOYMENT], env[ENV_SELECTOR], env[ENV_READY_PATH]) == (NAME, "app=team-llm", "/healthz")
        # a SIGTERM kill deletes one of its pods with its own grace period; another team's pod is refused
        assert deployment.kill_replica(team_pods[0], signal.SIGTERM) == 45
        neighbour = next(p for p in fake_apiserver.pod_names(NS) if p.startswith(NEIGHBOUR))
        with pytest.raises(DeploymentError, match=f"no replica '{neighbour}' in team/team-llm"):
            deployment.kill_replica(neighbour)
        assert deployment.clear_faults() == {row.name: NO_HOOKS for row in deployment.replicas()}  # no HTTP sent
        deployment.wait_ready(timeout_s=5)
    finally:
        deployment.close()
    deleted = [url.split("?")[0].rsplit("/", 1)[1] for method, url in fake_apiserver.requests if method == "DELETE"]
    assert deleted == [team_pods[0]] and writes(fake_apiserver) == []
    after = json.loads(json.dumps(fake_apiserver.objects, sort_keys=True))
    assert {path: obj["spec"] for path, obj in after.items()} == \
        {path: obj["spec"] for path, obj in json.loads(before).items()}  # its Deployment as its owner left it


def test_a_selector_alone_finds_the_deployment_whose_pods_it_selects_within_the_runner_role(fake_apiserver, tmp_path):
    add_team(fake_apiserver)
    requests = []
    with _attach(_spec(selector="tier=serving"), tmp_path / "selector") as deployment:
        assert deployment.view.name == NAME and deployment.label_selector == "tier=serving"
        assert all(row.name.startswith(f"{NAME}-") for row in deployment.replicas())
        deployment.kill_replica(deployment.replicas()[0].name)
        deployment.events()
    requests += fake_apiserver.requests
    fake_apiserver.requests.clear()
    with _attach(_spec(deployment=NAME, selector="app=team-llm,tier=serving"), tmp_path / "both") as deployment:
        assert deployment.label_selector == "app=team-llm,tier=serving"
    requests += fake_apiserver.requests
    assert writes(fake_apiserver) == [] and not [m for m, _ in requests if m in ("POST", "PUT", "PATCH")]
    needed = rules_for_requests(requests)
    assert needed == _rules(ATTACH_TARGET_CALLS) and needed <= set(RUNNER_RULES)


def _rules(calls: tuple[str, ...]) -> set[Rule]:
    verbs = {"read": "get", "list": "list", "delete": "delete"}
    rules = set()
    for call in calls:
        api, method = call.split(".")
        verb, resource = re.fullmatch(r"(read|list|delete)_namespaced_(\w+)", method).groups()
        rules.add(Rule("apps" if api == "AppsV1Api" else "", f"{resource}s", verbs[verb]))
    return rules


@pytest.mark.parametrize("changes, target, field, words", [
    ({}, {"deployment": "absent"}, "target.deployment", "no such Deployment in namespace team"),
    ({}, {"deployment": NAME, "selector": "app=other-app"}, "target.selector", "does not select the pods of"),
    ({}, {"selector": "app"}, "target.selector", "selects the pods of 2 Deployments in namespace team"),
    ({}, {"selector": "app=nobody"}, "target.selector", "selects the pods of 0 Deployments"),
    ({"ports": False}, {"deployment": NAME}, "target.port", "declares no containerPort"),
    ({"probes": {}}, {"deployment": NAME}, "target.readiness_path", "no HTTP probe"),
    ({"replicas": 1}, {"deployment": NAME}, "topology", "runs 1 replica: multi-active needs at least 2"),
])
def test_what_does_not_fit_the_deployment_is_one_config_error(fake_apiserver, tmp_path, changes, target, field, words):
    add_team(fake_apiserver, **changes)
    with pytest.raises(ConfigError) as err:
        _attach(_spec(**target), tmp_path)
    assert err.value.field == field and words in err.value.reason and "\n" not in str(err.value), str(err.value)
    assert writes(fake_apiserver) == []


def test_a_deployment_without_http_probes_takes_the_readiness_path_given(fake_apiserver, tmp_path):
    add_team(fake_apiserver, probes={"readinessProbe": {"tcpSocket": {"port": 8080}}})
    with _attach(_spec(deployment=NAME, readiness_path="/v1/models", port=8080), tmp_path) as deployment:
        assert deployment.ready_path == "/v1/models" and deployment.view.probes["readiness"] == {"tcpSocket": {"port": 8080}}


def test_a_deployment_target_is_neither_deployed_locally_nor_rendered_nor_applied(tmp_path):
    spec = _spec(deployment=NAME)
    with pytest.raises(ConfigError) as err:
        deploy(spec, platform="local", workdir=tmp_path)
    assert err.value.field == "target.deployment" and "--platform kubernetes" in err.value.reason
    with pytest.raises(ConfigError) as err:
        render_manifests(spec)
    assert err.value.field == "target" and "never rendered" in err.value.reason
    with pytest.raises(ConfigError, match="never applied"):
        attach_deployment(spec, workdir=tmp_path, apply=True)


def test_a_deployments_own_selector_becomes_the_selector_text_chaosk8s_takes():
    from kubernetes.client import V1LabelSelector, V1LabelSelectorRequirement

    from harness.platforms.kubernetes.attach import selector_text

    own = V1LabelSelector(match_labels={"app": "vllm", "track": "stable"}, match_expressions=[
        V1LabelSelectorRequirement(key="tier", operator="In", values=["gpu", "cpu"]),
        V1LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
        V1LabelSelectorRequirement(key="zone", operator="Exists"),
        V1LabelSelectorRequirement(key="env", operator="NotIn", values=["dev"])])
    assert selector_text(own) == "app=vllm,track=stable,tier in (gpu,cpu),!canary,zone,env notin (dev)"
