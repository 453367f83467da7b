"""Distributed Locust next to the in-cluster runner: a master Service and a Deployment of Locust workers.

Rendered with the runner when ``RenderOptions.load_workers`` is N > 0 (``harness render --runner
--load-workers N``). The runner pod is Locust's **master**: its environment says so
(``HARNESS_LOCUST_MASTER_PORT`` and ``HARNESS_LOCUST_WORKERS``, `runner_env`), and its Locust loads (`harness.load.locust_distributed`)
then bind the master on that port and wait for the workers instead of sending requests themselves.
What is rendered here:

- a Service ``<name>-locust-master`` (ClusterIP, port `LOCUST_MASTER_PORT`) in front of the runner
  pod, which the workers connect to;
- a Deployment ``<name>-locust-worker`` of N pods, each one Locust worker of the harness's locustfile
  (one core each: a Locust process uses one), labelled ``harness.io/load=true`` so that the
  service's NetworkPolicy admits them; started without a profile, a worker takes the master's
  (Locust forwards the locustfile's ``--harness-profile`` to its workers) and sends its per-request
  records to the master in Locust messages (``HARNESS_RECORDS_TO_MASTER=1``), which writes them on the
  results volume and merges them exactly; the master also records each worker's CPU from its
  heartbeats, so saturation is judged per worker and overall as on one machine;
- a NetworkPolicy admitting no ingress to the workers (they serve nothing), while the runner's own
  policy admits the workers on the master's port (`runner_ingress`).

Workers that find no master (between runs) keep retrying; the Deployment can be scaled to 0 between
nightly runs (``kubectl scale deploy/<name>-locust-worker --replicas 0``).
"""

from __future__ import annotations

from typing import Any

from harness.config import ServiceSpec
from harness.platforms.kubernetes.manifests import (
    LOAD_LABEL,
    checkov_skips,
    container_security_context,
    labels,
    pod_security_context,
)
from harness.platforms.kubernetes.options import RenderOptions

__all__ = ["LOCUST_MASTER_PORT", "ENV_MASTER_PORT", "ENV_EXPECT_WORKERS", "WORKER_RESOURCES", "master_service_name", "worker_name",
           "worker_selector", "runner_env", "runner_ingress", "loadgen_objects"]

LOCUST_MASTER_PORT = 5557  # Locust's own default master port
ENV_MASTER_PORT = "HARNESS_LOCUST_MASTER_PORT"  # harness.load.locust_distributed.ENV_MASTER_PORT
ENV_EXPECT_WORKERS = "HARNESS_LOCUST_WORKERS"  # harness.load.locust_distributed.ENV_EXPECT_WORKERS
WORKER_RESOURCES = {
    # a Locust worker is one process: one core is its ceiling, so it asks for one and is held to it
    "requests": {"cpu": "1", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
_LOCUSTFILE = 'import importlib.util as u; print(u.find_spec("harness.load.locustfile").origin)'
_SKIP_REASONS = (
    "CKV_K8S_8=A Locust worker serves no port to probe; its master drops a worker whose heartbeats stop",
    "CKV_K8S_9=A Locust worker serves no port to probe; its master hands users only to workers that said ready",
)


def master_service_name(spec: ServiceSpec) -> str:
    """Return the name of the Service in front of the runner's Locust master."""
    return f"{spec.name}-locust-master"


def worker_name(spec: ServiceSpec) -> str:
    """Return the name of the worker Deployment (and of its NetworkPolicy)."""
    return f"{spec.name}-locust-worker"


def worker_selector(spec: ServiceSpec) -> dict[str, str]:
    """Return the label selector of the worker pods."""
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "locust-worker"}


def runner_env(options: RenderOptions) -> list[dict[str, Any]]:
    """Return what the runner container's environment gains with workers: the port its master binds and how many
    workers it waits for before it starts (a worker that joined late would get no user)."""
    if not options.load_workers:
        return []
    return [{"name": ENV_MASTER_PORT, "value": str(LOCUST_MASTER_PORT)},
            {"name": ENV_EXPECT_WORKERS, "value": str(options.load_workers)}]


def runner_ingress(spec: ServiceSpec, options: RenderOptions) -> list[dict[str, Any]]:
    """Return the runner NetworkPolicy's ingress rules: the workers on the master's port, or none at all."""
    if not options.load_workers:
        return []
    return [{"from": [{"podSelector": {"matchLabels": worker_selector(spec)}}],
             "ports": [{"port": LOCUST_MASTER_PORT, "protocol": "TCP"}]}]


def _meta(spec: ServiceSpec, options: RenderOptions, name: str, component: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels(spec, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _worker_pod(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    master = f"{master_service_name(spec)}.{options.namespace}.svc.cluster.local"
    script = (f'exec python -m locust -f "$(python -c \'{_LOCUSTFILE}\')" --worker --master-host {master} '
              f"--master-port {LOCUST_MASTER_PORT} --loglevel INFO")
    container = {
        "name": "locust-worker",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "env": [
            {"name": "HARNESS_RECORDS_TO_MASTER", "value": "1"},  # harness.load.profiles.ENV_RECORDS_TO_MASTER
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": WORKER_RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "metadata": {"labels": {**labels(spec, "locust-worker"), LOAD_LABEL: "true"}},  # admitted by the service
        "spec": {
            "automountServiceAccountToken": False,  # a worker never calls the Kubernetes API
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
            "topologySpreadConstraints": [{
                # one worker per node where the cluster has them: the point is more cores than one node's
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": worker_selector(spec)},
            }],
        },
    }


def loadgen_objects(spec: ServiceSpec, options: RenderOptions) -> list[dict[str, Any]]:
    """Return the distributed Locust objects in apply order (none without ``options.load_workers``): the
    master Service, the workers' NetworkPolicy and their Deployment."""
    if not options.load_workers:
        return []
    runner = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "runner"}
    note = (f"{options.load_workers} Locust worker(s) of the runner's master ({master_service_name(spec)}:"
            f"{LOCUST_MASTER_PORT}); their records reach the master and are merged exactly (harness.platforms.kubernetes.loadgen)")
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(spec, options, master_service_name(spec), "runner"),
            "spec": {"type": "ClusterIP", "selector": runner,
                     "ports": [{"name": "locust-master", "port": LOCUST_MASTER_PORT, "targetPort": LOCUST_MASTER_PORT,
                                "protocol": "TCP"}]},
        },
        {
            # the workers serve nothing: no ingress; egress (the master, the service) stays open
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(spec, options, worker_name(spec), "locust-worker"),
            "spec": {"podSelector": {"matchLabels": worker_selector(spec)}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(spec, options, worker_name(spec), "locust-worker", **{"harness.io/note": note},
                              **checkov_skips(options, *_SKIP_REASONS)),
            "spec": {
                "replicas": options.load_workers,
                "revisionHistoryLimit": 2,
                "selector": {"matchLabels": worker_selector(spec)},
                "template": _worker_pod(spec, options),
            },
        },
    ]
