"""The in-cluster runner: a Job (and an optional nightly CronJob) running `harness` against the
in-cluster Service, with its own ServiceAccount, the least RBAC the chaos experiments need
(`rbac.RUNNER_RULES`), the spec in a ConfigMap and results on a volume.
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.config import ServiceSpec
from harness.platforms.kubernetes.manifests import (
    LOAD_LABEL,
    checkov_skips,
    container_port,
    container_security_context,
    labels,
    pod_security_context,
    selector,
)
from harness.platforms.kubernetes.loadgen import runner_env as loadgen_env
from harness.platforms.kubernetes.loadgen import runner_ingress
from harness.platforms.kubernetes.options import RenderOptions
from harness.platforms.kubernetes.rbac import role_rules

__all__ = ["SPEC_MOUNT", "RESULTS_MOUNT", "runner_name", "runner_objects", "runner_env"]

SPEC_MOUNT = "/etc/harness"  # the spec ConfigMap: /etc/harness/spec.yaml
RESULTS_MOUNT = "/results"
RUNNER_RESOURCES = {
    # the runner drives load (Locust users, the prober) as well as the chaos experiments
    "requests": {"cpu": "1", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
}

_SKIP_REASONS = (
    "CKV_K8S_35=The runner passes the optional fault-hook token as HARNESS_FAULT_TOKEN; the value comes from a Secret, never from this manifest",
    "CKV_K8S_38=The runner calls the Kubernetes API (pod kill, rollout state, events) with its own least-privilege ServiceAccount",
)


def runner_name(spec: ServiceSpec) -> str:
    """Return the name shared by the runner's Job, CronJob, ServiceAccount, Role and RoleBinding."""
    return f"{spec.name}-runner"


def _meta(spec: ServiceSpec, options: RenderOptions, name: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels(spec, "runner")}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def runner_env(spec: ServiceSpec, options: RenderOptions) -> list[dict[str, Any]]:
    """Return the runner container's environment: where the service is, and in-cluster API access."""
    endpoint = f"http://{spec.name}.{options.namespace}.svc.cluster.local:{container_port(spec)}"
    return [
        {"name": "HARNESS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HARNESS_K8S_DEPLOYMENT", "value": spec.name},
        {"name": "HARNESS_K8S_SELECTOR", "value": ",".join(f"{k}={v}" for k, v in selector(spec).items())},
        {"name": "HARNESS_ENDPOINT", "value": endpoint},
        {"name": "HARNESS_SPEC", "value": f"{SPEC_MOUNT}/spec.yaml"},
        # chaostoolkit-kubernetes uses the pod's ServiceAccount only when told it runs in a pod
        {"name": "CHAOSTOOLKIT_IN_POD", "value": "true"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        {"name": "HARNESS_FAULT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "harness-fault-token", "key": "token", "optional": True}}},
        *loadgen_env(options),  # with Locust workers rendered: the runner's Locust loads are their master
    ]


def _pod_template(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    name = runner_name(spec)
    results: dict[str, Any] = (
        {"name": "results", "persistentVolumeClaim": {"claimName": f"{spec.name}-results"}}
        if options.results_volume == "pvc"
        else {"name": "results", "emptyDir": {"sizeLimit": options.results_size}}
    )
    container = {
        "name": "runner",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(options.runner_command),
        "env": runner_env(spec, options),
        "resources": RUNNER_RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
            {"name": "results", "mountPath": RESULTS_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        # LOAD_LABEL admits the runner through the service's NetworkPolicy
        "metadata": {"labels": {**labels(spec, "runner"), LOAD_LABEL: "true"}},
        "spec": {
            "serviceAccountName": name,
            "automountServiceAccountToken": True,
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": [
                {"name": "spec", "configMap": {"name": f"{spec.name}-spec"}},
                results,
                {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            ],
        },
    }


def _job_spec(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    return {
        "backoffLimit": 0,  # a failed resilience run is a verdict, not something to retry (and inject faults twice)
        "activeDeadlineSeconds": options.runner_deadline_s,
        "ttlSecondsAfterFinished": 7 * 86400,
        "template": _pod_template(spec, options),
    }


def runner_objects(spec: ServiceSpec, options: RenderOptions) -> list[dict[str, Any]]:
    """Return the runner's objects in apply order: ServiceAccount, Role, RoleBinding, spec ConfigMap,
    a NetworkPolicy denying ingress to the runner, results PersistentVolumeClaim (when ``results_volume`` is "pvc"), a Job when ``runner`` is set,
    and a CronJob when a ``schedule`` is given (start one run of it with
    ``kubectl create job --from=cronjob/NAME``)."""
    name = runner_name(spec)
    spec_yaml = yaml.safe_dump(
        spec.model_dump(mode="json", by_alias=True, exclude={"service": {"weights_dir", "fault_token"}}),
        sort_keys=False,
    )
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(spec, options, name), "automountServiceAccountToken": False},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(spec, options, name, **{"harness.io/note": "exactly what the chaos experiments and the attached deployment call (harness.platforms.kubernetes.rbac)"}),
            "rules": role_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(spec, options, name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": options.namespace}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, options, f"{spec.name}-spec"), "data": {"spec.yaml": spec_yaml}},
        {
            # the runner serves nothing (but its Locust master, to its rendered workers): no other ingress;
            # egress (the API server, the Service) stays open
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(spec, options, name),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "runner"}},
                     "policyTypes": ["Ingress"], **({"ingress": runner_ingress(spec, options)} if options.load_workers else {})},
        },
    ]
    if options.results_volume == "pvc":
        objects.append({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(spec, options, f"{spec.name}-results"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": options.results_size}}},
        })
    if options.runner:
        objects.append({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(spec, options, name, **checkov_skips(options, *_SKIP_REASONS)),
            "spec": _job_spec(spec, options),
        })
    if options.schedule is not None:
        objects.append({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta(spec, options, f"{name}-nightly", **checkov_skips(options, *_SKIP_REASONS)),
            "spec": {
                "schedule": options.schedule,
                "concurrencyPolicy": "Forbid",  # two resilience runs at once would see each other's faults
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"metadata": {"labels": labels(spec, "runner")}, "spec": _job_spec(spec, options)},
            },
        })
    return objects
