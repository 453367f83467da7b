"""The service spec as Kubernetes objects: Namespace, ServiceAccount, Deployment, Service,
PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy, hardened the way cluster admins expect.

Each builder returns a plain dict (what `kubectl apply` and the API take). Differences from the local
platform are explained in a ``harness.io/note`` annotation on the object they concern, so a reader of
the YAML sees them where they apply.
"""

from __future__ import annotations

import math
from typing import Any

from harness.config import Probe, ServiceSpec
from harness.errors import ConfigError
from harness.platforms.kubernetes.options import RenderOptions
from harness.platforms.kubernetes.scaling import autoscaler_spec, deployment_strategy
from harness.quantities import parse_cpu_cores
from harness.service.options import start_fault_flags

__all__ = [
    "CONTAINER_UID",
    "PORT_NAME",
    "WEIGHTS_DIR",
    "LOAD_LABEL",
    "DEFAULT_CPU_LIMIT",
    "STARTUP_PERIOD_S",
    "labels",
    "selector",
    "pod_security_context",
    "container_security_context",
    "container_port",
    "checkov_skips",
    "startup_probe_from_load_time",
    "service_objects",
]

CONTAINER_UID = 10001  # the image's non-root user (a high UID, clear of host users)
PORT_NAME = "http"
WEIGHTS_DIR = "/opt/harness/weights"  # generated at image build time, read-only at run time
LOAD_LABEL = "harness.io/load"  # pods (or namespaces) with this label set to "true" may call the service
DEFAULT_CPU_LIMIT = "2"  # a spec without limits.cpu still gets requests and limits on Kubernetes
TMP_SIZE = "1Gi"  # the emptyDir for /tmp: the root filesystem is read-only

STARTUP_PERIOD_S = 2
# The startup probe allows LOAD_HEADROOM x the measured load time, and never less than
# MIN_STARTUP_BUDGET_S: a GPU node adds CUDA context creation and a colder page cache to the load.
LOAD_HEADROOM = 4.0
MIN_STARTUP_BUDGET_S = 30


def labels(spec: ServiceSpec, component: str) -> dict[str, str]:
    """Return the recommended app.kubernetes.io labels of one of the spec's objects."""
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "gpu-inference-harness",
        "app.kubernetes.io/managed-by": "harness",
    }


def selector(spec: ServiceSpec) -> dict[str, str]:
    """Return the label selector of the service's pods (stable across renders: never change it)."""
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "inference"}


def _meta(spec: ServiceSpec, options: RenderOptions, name: str, component: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels(spec, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def pod_security_context() -> dict[str, Any]:
    """Return the pod-level security context: non-root, the image's UID, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": CONTAINER_UID,
        "runAsGroup": CONTAINER_UID,
        "fsGroup": CONTAINER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Return the container-level security context: read-only root, no privilege, no capabilities."""
    return {
        "runAsNonRoot": True,
        "runAsUser": CONTAINER_UID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_port(spec: ServiceSpec) -> int:
    """Return the container port the service listens on; raise ConfigError for 0 or a privileged port."""
    port = spec.service.port
    if port == 0:
        raise ConfigError("service.port", port, "Kubernetes needs a fixed container port")
    if port < 1024:
        raise ConfigError("service.port", port, "a non-root container cannot bind a port below 1024")
    return port


def _whole_seconds(field: str, value: float, minimum: int) -> int:
    if value != int(value) or value < minimum:
        raise ConfigError(field, value, f"Kubernetes takes whole seconds >= {minimum}")
    return int(value)


def _probe(field: str, probe: Probe) -> dict[str, Any]:
    return {
        "httpGet": {"path": probe.path, "port": PORT_NAME, "scheme": "HTTP"},
        "initialDelaySeconds": _whole_seconds(f"{field}.initialDelaySeconds", probe.initial_delay_s, 0),
        "periodSeconds": _whole_seconds(f"{field}.periodSeconds", probe.period_s, 1),
        "timeoutSeconds": _whole_seconds(f"{field}.timeoutSeconds", probe.timeout_s, 1),
        "failureThreshold": probe.failure_threshold,
        "successThreshold": probe.success_threshold,
    }


def startup_probe_from_load_time(load_time_s: float, path: str = "/v2/health/ready") -> Probe:
    """Return a startup probe that allows the model ``load_time_s`` with headroom (see LOAD_HEADROOM)."""
    budget_s = max(MIN_STARTUP_BUDGET_S, LOAD_HEADROOM * load_time_s)
    return Probe(
        path=path, initialDelaySeconds=0, periodSeconds=STARTUP_PERIOD_S, timeoutSeconds=1,
        failureThreshold=math.ceil(budget_s / STARTUP_PERIOD_S), successThreshold=1,
    )


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    res = spec.resources
    if res.limits_memory is None:
        raise ConfigError("resources.limits.memory", None, "Kubernetes manifests need a memory limit")
    limits_cpu = res.limits_cpu or DEFAULT_CPU_LIMIT
    limits: dict[str, Any] = {"cpu": limits_cpu, "memory": res.limits_memory}
    requests: dict[str, Any] = {"cpu": res.requests_cpu or limits_cpu, "memory": res.requests_memory or res.limits_memory}
    if res.gpus:
        # extended resources: the request must equal the limit, so only the limit is given
        limits["nvidia.com/gpu"] = res.gpus
    return {"requests": requests, "limits": limits}


def _serve_args(spec: ServiceSpec) -> list[str]:
    svc = spec.service
    if svc.device == "cuda" and not spec.resources.gpus:
        raise ConfigError("service.device", svc.device, "needs resources.nvidia.com/gpu >= 1 on Kubernetes")
    args = [
        "--port", str(container_port(spec)),
        "--model", svc.model,
        "--precision", svc.precision,
        "--device", svc.device,
        "--max-batch-size", str(svc.max_batch_size),
        "--max-queue-delay-ms", f"{svc.max_queue_delay_ms:g}",
        "--max-queue-size", str(svc.max_queue_size),
        "--max-body-bytes", str(svc.max_body_bytes),
        "--warmup-iters", str(svc.warmup_iters),
        # the image holds weights generated for its SEED build argument; another seed fails verification
        "--seed", str(svc.seed),
        "--grace-period-s", f"{svc.grace_period_s:g}",
        "--live-during-load" if svc.live_during_load else "--no-live-during-load",
    ]
    if svc.startup_delay_s:
        args += ["--startup-delay-s", f"{svc.startup_delay_s:g}"]
    args += start_fault_flags(svc)
    threads = svc.torch_threads
    if threads is None:
        # torch sizes its pool from the node's cores, not the container's quota: pin it to the limit
        threads = max(1, math.floor(parse_cpu_cores(spec.resources.limits_cpu or DEFAULT_CPU_LIMIT)))
    args += ["--torch-threads", str(threads)]
    return args


def _env() -> list[dict[str, Any]]:
    return [
        {"name": "HARNESS_WEIGHTS_DIR", "value": WEIGHTS_DIR},
        # the root filesystem is read-only: caches go to the /tmp emptyDir
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        # fault hooks stay disabled unless the operator creates this Secret (never rendered here)
        {"name": "HARNESS_FAULT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "harness-fault-token", "key": "token", "optional": True}}},
    ]


_TOPOLOGY_NOTES = {
    "single": "single: one replica; a pod kill is an outage until the replacement is Ready.",
    "active-standby": (
        "active-standby: rendered as 2 replicas behind one Service. A Kubernetes Service spreads traffic over "
        "every Ready pod, so both replicas take traffic (the local platform sends it to the primary only). "
        "Primary/standby routing needs leader election or a mesh route outside this manifest."
    ),
    "multi-active": "multi-active: every Ready replica takes traffic, as on the local platform.",
}

_IMAGE_DIGEST = "CKV_K8S_43=The image is chosen at render time (--image NAME:TAG); render with NAME@sha256:DIGEST to pin it"
_PULL_POLICY = "CKV_K8S_15=IfNotPresent keeps locally loaded images (kind load, minikube image load) usable; tags are immutable release tags"


def checkov_skips(options: RenderOptions, *reasons: str) -> dict[str, str]:
    """Return checkov suppression annotations, each ``CHECK_ID=reason``: checkov reads them from the
    object itself, so the justification is part of the manifest. The image-digest check is only
    suppressed when the image is not pinned by digest."""
    common = [] if "@sha256:" in options.image else [_IMAGE_DIGEST]
    return {f"checkov.io/skip{i}": text for i, text in enumerate([*common, _PULL_POLICY, *reasons], start=1)}


def _deployment(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    probes = spec.probes
    startup = probes.startup or startup_probe_from_load_time(options.load_time_s)
    container: dict[str, Any] = {
        "name": "inference",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": _serve_args(spec),
        "ports": [{"name": PORT_NAME, "containerPort": container_port(spec), "protocol": "TCP"}],
        "env": _env(),
        "resources": _resources(spec),
    }
    if probes.liveness is not None:
        container["livenessProbe"] = _probe("probes.liveness", probes.liveness)
    if probes.readiness is not None:
        container["readinessProbe"] = _probe("probes.readiness", probes.readiness)
    container["startupProbe"] = _probe("probes.startup", startup)
    container["securityContext"] = container_security_context()
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,  # the service never calls the Kubernetes API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": math.ceil(spec.termination_grace_period_s),
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}],
        "topologySpreadConstraints": [{
            # replicas on different nodes where the cluster has them; a one-node cluster still schedules
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(spec)},
        }],
    }
    if spec.resources.gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    restart = spec.restart
    note = (
        f"{_TOPOLOGY_NOTES[spec.topology]} Startup probe: "
        + ("from the spec." if probes.startup else f"derived from a measured model load time of {options.load_time_s:g} s.")
        + f" Restart back-off is the kubelet's (10 s doubling to 300 s), not the spec's "
        f"{restart.backoff_base_s:g} s / {restart.backoff_cap_s:g} s, which only the local platform applies."
    )
    skips = checkov_skips(options, "CKV_K8S_35=The service reads its optional fault-hook token from HARNESS_FAULT_TOKEN; "
                          "the value comes from a Secret, never from this manifest")
    meta = _meta(spec, options, spec.name, "inference", **{"harness.io/note": note}, **skips)
    meta["labels"]["harness.io/topology"] = spec.topology
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replica_count,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(spec)},
            # replicated: surge first, never below the replica count (a GPU surge needs a spare GPU); single: no
            # room for a second replica, so its update is an outage (as on the local platform)
            "strategy": deployment_strategy(spec),
            "template": {
                "metadata": {"labels": {**labels(spec, "inference"), "harness.io/topology": spec.topology}},
                "spec": pod_spec,
            },
        },
    }


def _service(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    port = container_port(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, options, spec.name, "inference"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec),
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def _disruption_budget(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    if spec.topology == "single":
        # a PDB cannot protect one replica without blocking every node drain: allow the eviction
        budget, note = {"maxUnavailable": 1}, "single replica: a voluntary eviction is an outage; the budget allows it"
    else:
        budget = {"minAvailable": max(1, spec.replica_count - 1)}
        note = "keeps all but one replica through voluntary disruptions (drains, upgrades)"
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, options, spec.name, "inference", **{"harness.io/note": note}),
        "spec": {**budget, "selector": {"matchLabels": selector(spec)}},
    }


def _autoscaler(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    hpa_spec, note = autoscaler_spec(spec, options)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, options, spec.name, "inference", **{"harness.io/note": note}),
        "spec": hpa_spec,
    }


def _network_policy(spec: ServiceSpec, options: RenderOptions) -> dict[str, Any]:
    note = (
        f"admits only pods labelled {LOAD_LABEL}=true in this namespace (the runner, load generators) and pods "
        f"in namespaces labelled {LOAD_LABEL}=true; add a rule for a Prometheus namespace to scrape /metrics"
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, options, spec.name, "inference", **{"harness.io/note": note}),
        "spec": {
            "podSelector": {"matchLabels": selector(spec)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {LOAD_LABEL: "true"}}},
                    {"namespaceSelector": {"matchLabels": {LOAD_LABEL: "true"}}},
                ],
                "ports": [{"port": PORT_NAME, "protocol": "TCP"}],
            }],
        },
    }


def service_objects(spec: ServiceSpec, options: RenderOptions) -> list[dict[str, Any]]:
    """Return the service's objects in apply order; raise ConfigError for a spec Kubernetes cannot take.

    The HorizontalPodAutoscaler is rendered for `multi-active` only: `single` and `active-standby`
    have a fixed replica count by definition. Its values are the spec's ``autoscaling`` when it has one
    (`harness.platforms.kubernetes.scaling`).
    """
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": {"app.kubernetes.io/part-of": "gpu-inference-harness"}},
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, options, spec.name, "inference"),
        "automountServiceAccountToken": False,
    }
    objects = [namespace, account, _deployment(spec, options), _service(spec, options), _disruption_budget(spec, options)]
    if spec.topology == "multi-active":
        objects.append(_autoscaler(spec, options))
    objects.append(_network_policy(spec, options))
    return objects
