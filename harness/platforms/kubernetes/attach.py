"""A team's own Deployment on a cluster (a spec's ``deployment`` target), attached to as it is.

`attach_deployment` reads the Deployment from the API: by name (``target.deployment``), or as the one
Deployment in the namespace whose pod template ``target.selector`` selects. From it, never from the
harness's own defaults, come:

- its pods: those its own ``spec.selector`` selects (matchLabels and matchExpressions), or those of
  the target's ``selector``, which must select its pod template;
- its replica count (what "every pod Ready" means), its container port (``target.port`` picks the
  container that declares it) and its termination grace period (a SIGTERM kill's);
- its readiness, liveness and startup probes, as its pod template states them: recorded, never
  changed. Its readiness probe's HTTP path (else its startup's, else its liveness's; or
  ``target.readiness_path``) is what the Kubernetes experiments ask through the Service.

Attaching makes only the calls of `rbac.ATTACH_TARGET_CALLS` (get or list deployments; list, get and
delete pods; list events): no Deployment is created, patched or deleted, and `close` deletes nothing.
What was read is recorded twice: in the state file (``attached``) and as the ``Attached`` event at the
head of events.jsonl, which a run keeps beside its results.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.base import Event
from harness.platforms.kubernetes.client import KubernetesClient
from harness.platforms.kubernetes.deployment import WATCH_INTERVAL_S, KubernetesDeployment
from harness.platforms.kubernetes.options import DEFAULT_NAMESPACE
from harness.targetspec import Target, selector_matches, selector_terms

__all__ = ["ATTACHED", "NO_HOOKS", "DeploymentView", "AttachedDeployment", "attach_deployment", "read_view",
           "selector_text"]

ATTACHED = "Attached"  # the event recording what the harness read of the Deployment it attached to
NO_HOOKS = "no fault hooks: a deployment target is the team's own server (nothing was injected through hooks)"
DEFAULT_GRACE_S = 30.0  # Kubernetes' terminationGracePeriodSeconds when a pod template gives none
_PROBES = ("readiness", "startup", "liveness")  # the order a readiness path is looked for in
_OPERATORS = {"In": "in", "NotIn": "notin"}


@dataclass(frozen=True)
class DeploymentView:
    """What the harness read of an existing Deployment; ``probes`` are its pod template's, as the API sent them."""

    name: str
    namespace: str
    selector: str  # its pods' label selector
    replicas: int
    container: str
    port: int
    grace_period_s: float
    ready_path: str  # asked through the Service by the experiments' steady state
    probes: dict[str, Any] = field(default_factory=dict)  # readiness, liveness, startup: a probe's data or None
    labels: dict[str, str] = field(default_factory=dict)  # its pod template's labels

    def to_dict(self) -> dict[str, Any]:
        """Return the view as JSON-ready data."""
        return asdict(self)


def selector_text(label_selector: Any) -> str:
    """Return a V1LabelSelector as selector text (``app=x,tier in (a,b),!canary``), as chaosk8s and the
    API's ``labelSelector`` parameter take it."""
    terms = [f"{key}={value}" for key, value in sorted((label_selector.match_labels or {}).items())]
    for expression in label_selector.match_expressions or []:
        key, operator, values = expression.key, expression.operator, expression.values or []
        if operator in _OPERATORS:
            terms.append(f"{key} {_OPERATORS[operator]} ({','.join(values)})")
        else:
            terms.append(key if operator == "Exists" else f"!{key}")
    return ",".join(terms)


def _template_labels(deployment: Any) -> dict[str, str]:
    template = deployment.spec.template
    return dict((template.metadata.labels if template.metadata else None) or {})


def _find(client: KubernetesClient, namespace: str, target: Target) -> Any:
    if target.deployment is not None:
        found = client.call(f"get deployment {namespace}/{target.deployment}", client.apps.read_namespaced_deployment,
                            target.deployment, namespace, missing_ok=True)
        if found is None:
            raise ConfigError("target.deployment", target.deployment, f"no such Deployment in namespace {namespace} "
                              f"(--namespace names where it is)")
        return found
    terms = selector_terms(str(target.selector))
    candidates = [item for item in client.list_deployments(namespace) if selector_matches(terms, _template_labels(item))]
    if len(candidates) != 1:
        names = ", ".join(item.metadata.name for item in candidates) or "none"
        raise ConfigError("target.selector", target.selector, f"selects the pods of {len(candidates)} Deployments in "
                          f"namespace {namespace} ({names}); it must select one (or give target.deployment)")
    return candidates[0]


def _http_path(probe: dict[str, Any] | None) -> str | None:
    http_get = (probe or {}).get("httpGet") or {}
    return http_get.get("path") or ("/" if http_get else None)


def read_view(client: KubernetesClient, namespace: str, target: Target) -> DeploymentView:
    """Return what the harness needs of the target's Deployment, read from the API (nothing is changed).

    Raises ConfigError naming the target field when the Deployment is missing, the selector does not
    select exactly its pods' template, no container port is known, or no HTTP probe gives a readiness
    path; DeploymentError or PlatformUnavailable when the API refuses or cannot be reached.
    """
    found = _find(client, namespace, target)
    name, labels = found.metadata.name, _template_labels(found)
    where = f"deployment {namespace}/{name}"
    if target.selector is not None:
        if not selector_matches(selector_terms(target.selector), labels):
            shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
            raise ConfigError("target.selector", target.selector, f"does not select the pods of {where} "
                              f"(their labels: {shown})")
        selector = target.selector
    else:
        selector = selector_text(found.spec.selector)
        try:
            selector_terms(selector)
        except ValueError as exc:  # pod-kill deletes what it selects: never a selector of every other pod
            raise ConfigError("target.selector", None, f"{where}'s own selector {selector!r} {exc}: "
                                                       f"give target.selector") from None
    containers = list(found.spec.template.spec.containers or [])
    declared = [(c, p.container_port) for c in containers for p in (c.ports or []) if p.container_port]
    if target.port is not None:
        container = next((c for c, port in declared if port == target.port), containers[0])
        port = target.port
    elif declared:
        container, port = declared[0]
    else:
        raise ConfigError("target.port", None, f"{where} declares no containerPort: give the port its server listens on")
    probes = {kind: client.to_data(getattr(container, f"{kind}_probe")) for kind in ("readiness", "liveness", "startup")}
    ready_path = target.readiness_path or next((path for kind in _PROBES if (path := _http_path(probes[kind]))), None)
    if ready_path is None:
        raise ConfigError("target.readiness_path", None, f"{where} has no HTTP probe to take a readiness path from: "
                          f"give the path that answers 200 through the Service when it is ready")
    grace_s = found.spec.template.spec.termination_grace_period_seconds
    return DeploymentView(
        name=name, namespace=namespace, selector=selector,
        replicas=found.spec.replicas if found.spec.replicas is not None else 1, container=container.name, port=port,
        grace_period_s=float(grace_s if grace_s is not None else DEFAULT_GRACE_S), ready_path=ready_path,
        probes=probes, labels=labels,
    )


class AttachedDeployment(KubernetesDeployment):
    """A team's Deployment, read as `DeploymentView`, behind the platform's Deployment interface; never changed."""

    def __init__(self, spec: ServiceSpec, client: KubernetesClient, view: DeploymentView, *, workdir: str | Path,
                 endpoint: str | None = None) -> None:
        """``endpoint`` is where clients reach it (default: its Service's cluster DNS name, `Target.service_address`)."""
        assert spec.target is not None
        service, port = spec.target.service_address(view.name, view.port)
        super().__init__(spec, client, namespace=view.namespace, workdir=workdir,
                         endpoint=endpoint or f"http://{service}.{view.namespace}.svc.cluster.local:{port}",
                         name=view.name, port=view.port, label_selector=view.selector)
        self.view = view
        self.replica_count = view.replicas
        self.grace_period_s = view.grace_period_s
        self.ready_path = view.ready_path
        self.state_extra = {"attached": view.to_dict()}
        self._terms = selector_terms(view.selector)
        self._append([Event(time.time(), time.monotonic(), ATTACHED, None, reason=ATTACHED,
                            message=f"attached to deployment {view.namespace}/{view.name} ({view.replicas} replicas, "
                                    f"pods {view.selector}, port {view.port}); its own probes, never changed",
                            extra={"attached": view.to_dict()})])

    def _owns(self, pod: Any) -> bool:
        """Return True when ``pod`` is one of the Deployment's (its selector selects it)."""
        return selector_matches(self._terms, pod.metadata.labels or {})

    def clear_faults(self) -> dict[str, str]:
        """Return, per pod, that there is nothing to clear: a team's server has no fault hooks (no request is sent)."""
        return {row.name: NO_HOOKS for row in self.replicas()}


def attach_deployment(spec: ServiceSpec, *, workdir: str | Path, namespace: str = DEFAULT_NAMESPACE,
                      endpoint: str | None = None, context: str | None = None, apply: bool | None = False,
                      client: KubernetesClient | None = None, wait: bool = True, timeout_s: float = 300.0,
                      watch_interval_s: float | None = WATCH_INTERVAL_S) -> AttachedDeployment:
    """Attach to the spec's ``deployment`` target in ``namespace``; return it once rolled out and every pod is
    Ready (unless ``wait`` is False), its pod watcher started (unless ``watch_interval_s`` is None).

    Raises ConfigError (not a deployment target, ``apply`` asked, a field that does not fit the
    Deployment, or a topology it cannot have: a replicated tier on one replica), PlatformUnavailable
    (no cluster) or DeploymentError (refused, or not Ready within ``timeout_s``).
    """
    target = spec.target
    if target is None or target.kind != "deployment":
        raise ConfigError("target", spec.target_kind, "only a deployment target is attached to as it is")
    if apply:
        raise ConfigError("apply", apply, "an existing Deployment is attached to as it is, never applied")
    client = client or KubernetesClient(context=context)
    try:
        view = read_view(client, namespace, target)
        if spec.topology != "single" and view.replicas < 2:
            raise ConfigError("topology", spec.topology, f"deployment {namespace}/{view.name} runs {view.replicas} "
                              f"replica: {spec.topology} needs at least 2 (a single Deployment claims topology single)")
        deployment = AttachedDeployment(spec, client, view, workdir=workdir, endpoint=endpoint)
        if wait:
            client.wait_rollout(namespace, view.name, timeout_s=timeout_s)
            deployment.wait_ready(timeout_s=timeout_s)
        if watch_interval_s is not None:
            deployment.watch(watch_interval_s)
    except BaseException:
        client.close()
        raise
    return deployment
