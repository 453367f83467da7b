"""Live checks that run only where a cluster or a Docker engine is configured, skipped otherwise.

- kubernetes: a kubeconfig whose API server answers, and an image the cluster can run named by
  ``HARNESS_TEST_IMAGE`` (e.g. built with the Dockerfile and ``kind load docker-image``-ed). Deploys
  the rendered manifests into a fresh namespace, waits for the rollout, kills a pod, sees it replaced,
  runs the runner Job to completion, and deletes everything (namespace included) in a finally.
- docker: ``docker info`` succeeds. Builds the CPU image and checks it runs as the non-root user with
  verified weights.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.config import ServiceSpec
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parents[3]


def _cluster_or_skip():
    from harness.platforms.kubernetes import KubernetesClient

    try:
        client = KubernetesClient(request_timeout_s=5)
    except HarnessError as exc:
        pytest.skip(str(exc))
    try:
        client.api.configuration.retries = 0
        client.server_version()
    except HarnessError as exc:
        client.close()
        pytest.skip(f"Kubernetes cluster configured but not reachable: {exc}")
    image = os.environ.get("HARNESS_TEST_IMAGE")
    if not image:
        client.close()
        pytest.skip("set HARNESS_TEST_IMAGE to an image of this Dockerfile that the cluster can run")
    return client, image


@pytest.mark.kubernetes
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deploy_kill_and_runner_job_on_a_live_cluster(tmp_path):
    from harness.platforms.kubernetes import RenderOptions, deploy_kubernetes, render_manifests

    client, image = _cluster_or_skip()
    namespace = f"harness-test-{uuid.uuid4().hex[:6]}"
    spec = ServiceSpec.model_validate({"topology": "multi-active", "replicas": 2, "resources": {"limits.memory": "2Gi", "limits.cpu": "1"}})
    options = RenderOptions(image=image, namespace=namespace, runner=True, results_volume="emptyDir",
                            runner_command=("harness", "--version"), runner_deadline_s=300)
    objects = render_manifests(spec, options)
    try:
        with deploy_kubernetes(spec, namespace=namespace, workdir=tmp_path, client=client, apply=True,
                               timeout_s=300, options=RenderOptions(image=image, namespace=namespace)) as deployment:
            victim = deployment.replicas()[0].name
            deployment.kill_replica(victim, signal.SIGKILL)
            deployment.wait_ready(timeout_s=300)
            assert victim not in [row.name for row in deployment.replicas()]
            client.apply([obj for obj in objects if obj["kind"] not in ("Deployment",)])
            _wait_job(client, namespace, f"{spec.name}-runner", timeout_s=300)
            assert any(event.reason == "Killing" for event in deployment.events())
    finally:
        from harness.platforms.kubernetes import KubernetesClient

        cleanup = KubernetesClient()
        try:
            cleanup.delete(objects, keep_kinds=())  # the namespace too: it was made for this test
        finally:
            cleanup.close()


def _wait_job(client, namespace: str, name: str, timeout_s: float) -> None:
    from kubernetes import client as k8s

    batch = k8s.BatchV1Api(client.api)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.call(f"get job {name}", batch.read_namespaced_job, name, namespace)
        if job.status and job.status.succeeded:
            return
        assert not (job.status and job.status.failed), f"runner job {name} failed"
        time.sleep(2)
    pytest.fail(f"runner job {name} did not finish within {timeout_s} s")


def _docker_or_skip() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker engine: the docker CLI is not installed")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine: docker info failed: {info.stderr.strip()[:200]}")
    return docker


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_cpu_image_builds_and_runs_as_non_root_with_verified_weights():
    docker = _docker_or_skip()
    tag = f"gpu-inference-harness:test-{uuid.uuid4().hex[:6]}"
    try:
        subprocess.run([docker, "build", "--build-arg", "VARIANT=cpu", "-t", tag, str(ROOT)], check=True, timeout=3300)
        check = (
            "import os; from harness.service.weights import verify_weights, weights_folder; "
            "m = verify_weights(weights_folder(os.environ['HARNESS_WEIGHTS_DIR'], 'ranker-mlp', 0), 'ranker-mlp', 0); "
            "print(os.getuid(), m['sha256'])"
        )
        result = subprocess.run([docker, "run", "--rm", "--read-only", "--entrypoint", "python", tag, "-c", check],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        uid, sha = result.stdout.split()
        assert uid == "10001" and len(sha) == 64
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=120)
