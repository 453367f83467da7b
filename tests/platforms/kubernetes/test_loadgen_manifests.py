"""Distributed Locust next to the in-cluster runner: a master Service in front of the runner, a Deployment of
Locust workers, their NetworkPolicies; valid against the schema offline and hardened like the rest (checkov:
tests/platforms/kubernetes/test_policy.py scans them too)."""

from __future__ import annotations

import shlex

import kubernetes_validate
import pytest

from harness.config import ServiceSpec
from harness.platforms.kubernetes import RenderOptions, render_manifests
from harness.platforms.kubernetes.loadgen import ENV_EXPECT_WORKERS, ENV_MASTER_PORT, LOCUST_MASTER_PORT
from harness.platforms.kubernetes.manifests import LOAD_LABEL

from .test_manifests import SCHEMA_VERSIONS


def _objects(**options) -> dict[tuple[str, str], dict]:
    objects = render_manifests(ServiceSpec(), RenderOptions(runner=True, **options))
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_master_service_and_the_workers_validate_against_the_schema(version):
    objects = _objects(load_workers=3)
    assert {("Service", "reference-locust-master"), ("Deployment", "reference-locust-worker"),
            ("NetworkPolicy", "reference-locust-worker")} <= set(objects)
    for obj in objects.values():
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_workers_connect_to_the_runner_as_their_master_and_send_it_their_records():
    objects = _objects(load_workers=3)
    service = objects[("Service", "reference-locust-master")]
    runner_pods = {"app.kubernetes.io/name": "reference", "app.kubernetes.io/component": "runner"}
    assert service["spec"]["selector"] == runner_pods
    assert service["spec"]["ports"][0]["port"] == LOCUST_MASTER_PORT == 5557
    workers = objects[("Deployment", "reference-locust-worker")]
    assert workers["spec"]["replicas"] == 3
    pod = workers["spec"]["template"]
    assert pod["metadata"]["labels"][LOAD_LABEL] == "true"  # admitted by the service's NetworkPolicy
    container = pod["spec"]["containers"][0]
    words = shlex.split(container["command"][2])
    assert container["command"][:2] == ["sh", "-c"] and words[:4] == ["exec", "python", "-m", "locust"]
    assert words[words.index("--master-host") + 1] == "reference-locust-master.harness.svc.cluster.local"
    assert "--worker" in words and words[words.index("--master-port") + 1] == "5557"
    assert {e["name"]: e["value"] for e in container["env"]}["HARNESS_RECORDS_TO_MASTER"] == "1"
    assert container["resources"]["limits"]["cpu"] == "1"  # one Locust process: one core
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["spec"]["automountServiceAccountToken"] is False
    # the runner is the master: its environment says so, and its policy admits the workers on that port only
    job = objects[("Job", "reference-runner")]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[ENV_MASTER_PORT] == "5557" and env[ENV_EXPECT_WORKERS] == "3"  # it waits for all 3 before it starts
    policy = objects[("NetworkPolicy", "reference-runner")]["spec"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "reference", "app.kubernetes.io/component": "locust-worker"}}}],
        "ports": [{"port": 5557, "protocol": "TCP"}]}]
    assert objects[("NetworkPolicy", "reference-locust-worker")]["spec"]["policyTypes"] == ["Ingress"]


def test_without_workers_the_runner_is_as_before():
    objects = _objects()
    assert not any(name.endswith(("-locust-master", "-locust-worker")) for _, name in objects)
    policy = objects[("NetworkPolicy", "reference-runner")]["spec"]
    assert "ingress" not in policy  # no ingress at all
    env = {e["name"] for e in objects[("Job", "reference-runner")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {ENV_MASTER_PORT, ENV_EXPECT_WORKERS} & env


def test_the_platform_and_the_load_layer_name_the_master_port_alike():
    from harness.load import locust_distributed
    from harness.load.profiles import ENV_RECORDS_TO_MASTER

    assert (locust_distributed.ENV_MASTER_PORT, locust_distributed.ENV_EXPECT_WORKERS, locust_distributed.MASTER_PORT) == (
        ENV_MASTER_PORT, ENV_EXPECT_WORKERS, LOCUST_MASTER_PORT)
    worker = _objects(load_workers=1)[("Deployment", "reference-locust-worker")]
    assert ENV_RECORDS_TO_MASTER in {e["name"] for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
