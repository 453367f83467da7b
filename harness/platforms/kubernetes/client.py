"""A small wrapper over the official `kubernetes` client: apply, wait for rollout, read pods and events,
delete pods and objects. Kubernetes exceptions are translated here, where they enter the harness:
no configured or reachable cluster is `PlatformUnavailable`, a refused or failed call is
`DeploymentError` naming what was attempted.

Configuration comes from the usual places: in-cluster (the pod's ServiceAccount) when
``KUBERNETES_SERVICE_HOST`` is set and no kubeconfig was asked for, else ``$KUBECONFIG`` (a
``:``-separated list) or ``~/.kube/config``, with an optional context.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import DeploymentError, PlatformUnavailable
from harness.extras import require_extra

__all__ = ["FIELD_MANAGER", "KubernetesClient", "kubeconfig_paths", "resource_path", "rollout_progress"]

FIELD_MANAGER = "harness"  # owner of the fields we apply (server-side apply)
T = TypeVar("T")

# Kinds the renderer produces: plural resource name and whether they live in a namespace.
_RESOURCES: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "Service": ("services", True),
    "Deployment": ("deployments", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "NetworkPolicy": ("networkpolicies", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "Job": ("jobs", True),
    "CronJob": ("cronjobs", True),
}


def kubeconfig_paths() -> list[Path]:
    """Return the kubeconfig files the client would read: $KUBECONFIG's entries, else ~/.kube/config."""
    value = os.environ.get("KUBECONFIG", "")
    parts = [p for p in value.split(os.pathsep) if p] or ["~/.kube/config"]
    return [Path(p).expanduser() for p in parts]


def resource_path(obj: dict[str, Any]) -> str:
    """Return the API path of a rendered object (``/apis/apps/v1/namespaces/NS/deployments/NAME``).

    Raises DeploymentError for a kind the renderer does not produce.
    """
    kind = obj.get("kind")
    if kind not in _RESOURCES:
        raise DeploymentError(f"cannot apply kind {kind!r}: known kinds are {', '.join(_RESOURCES)}")
    plural, namespaced = _RESOURCES[kind]
    api_version = obj["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    meta = obj["metadata"]
    scope = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{scope}/{plural}/{meta['name']}"


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


class KubernetesClient:
    """The calls the harness makes to a cluster, with errors translated; one instance per cluster."""

    def __init__(self, *, context: str | None = None, config_file: str | Path | None = None, request_timeout_s: float = 15.0) -> None:
        """Load configuration; raise PlatformUnavailable when no cluster is configured, MissingExtra (exit 2)
        when the kubernetes extra is not installed."""
        require_extra("kubernetes", "the Kubernetes platform")
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.request_timeout_s = request_timeout_s
        configuration = client.Configuration()
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and context is None and config_file is None
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                self.source = "in-cluster service account"
            else:
                files = [Path(config_file)] if config_file else kubeconfig_paths()
                if not any(f.is_file() for f in files):
                    raise PlatformUnavailable(
                        f"no Kubernetes cluster configured: no kubeconfig at {', '.join(map(str, files))} "
                        "and not running in a pod"
                    )
                config.load_kube_config(
                    config_file=os.pathsep.join(str(f) for f in files), context=context,
                    client_configuration=configuration, persist_config=False,
                )
                self.source = f"kubeconfig {os.pathsep.join(str(f) for f in files)}" + (f" context {context}" if context else "")
        except ConfigException as exc:
            raise PlatformUnavailable(f"no usable Kubernetes configuration: {exc}") from exc
        self.host = configuration.host
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self._version_api = client.VersionApi(self.api)

    # -- error translation -------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, missing_ok: bool = False, **kwargs: Any) -> T | None:
        """Return ``fn(*args, **kwargs)``; translate client errors (a 404 returns None when ``missing_ok``).

        Raises PlatformUnavailable when the API server cannot be reached, DeploymentError when it
        refuses or fails the call (the message names ``what`` and the status).
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", self.request_timeout_s)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            raise DeploymentError(f"{what}: {_api_error_text(exc)}") from exc
        except (HTTPError, OSError) as exc:
            raise PlatformUnavailable(f"{what}: cannot reach the Kubernetes API at {self.host}: {exc}") from exc

    def _request(self, method: str, path: str, *, body: Any = None, query: Iterable[tuple[str, str]] = (),
                 content_type: str = "application/json") -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        def send() -> dict[str, Any]:
            params = self.api.param_serialize(
                method, path, query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*params, _request_timeout=self.request_timeout_s)
            response.read()
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response)
            return json.loads(response.data or b"{}")

        return self.call(f"{method} {path}", lambda **_: send()) or {}

    # -- cluster -----------------------------------------------------------------------------------
    def server_version(self) -> str:
        """Return the API server's version (``v1.31.2``); raise PlatformUnavailable if it cannot be reached."""
        info = self.call("read server version", self._version_api.get_code)
        return str(info.git_version)

    # -- objects -----------------------------------------------------------------------------------
    def apply(self, objects: Iterable[dict[str, Any]]) -> list[str]:
        """Server-side apply each object in order; return their descriptions. Raises DeploymentError."""
        applied = []
        for obj in objects:
            self._request(
                "PATCH", resource_path(obj), body=obj, content_type="application/apply-patch+yaml",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            )
            applied.append(_describe(obj))
        return applied

    def delete(self, objects: Iterable[dict[str, Any]], *, keep_kinds: tuple[str, ...] = ("Namespace",)) -> list[str]:
        """Delete each object in reverse order (absent ones are skipped), dependents in the background;
        ``keep_kinds`` are left alone (a namespace may hold more than ours). Return what was deleted."""
        from kubernetes.client.exceptions import ApiException

        deleted = []
        for obj in reversed(list(objects)):
            if obj.get("kind") in keep_kinds:
                continue
            try:
                self._request("DELETE", resource_path(obj), query=[("propagationPolicy", "Background")])
            except DeploymentError as exc:
                if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                    continue
                raise
            deleted.append(_describe(obj))
        return deleted

    # -- deployments, pods, events -------------------------------------------------------------------
    def read_deployment(self, namespace: str, name: str) -> Any:
        """Return the Deployment (a V1Deployment); raise DeploymentError if it is missing."""
        return self.call(f"get deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)

    def list_deployments(self, namespace: str) -> list[Any]:
        """Return the namespace's Deployments (V1Deployment), sorted by name."""
        result = self.call(f"list deployments in {namespace}", self.apps.list_namespaced_deployment, namespace)
        return sorted(result.items or [], key=lambda item: item.metadata.name)

    def to_data(self, obj: Any) -> Any:
        """Return an API object (a V1Probe ...) as the plain JSON data the API server sends (camelCase keys)."""
        return self.api.sanitize_for_serialization(obj)

    def list_pods(self, namespace: str, label_selector: str) -> list[Any]:
        """Return the pods (V1Pod) matching ``label_selector``, sorted by name."""
        result = self.call(f"list pods {label_selector!r} in {namespace}", self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return sorted(result.items or [], key=lambda pod: pod.metadata.name)

    def read_pod(self, namespace: str, name: str) -> Any | None:
        """Return the pod (V1Pod), or None when it does not exist."""
        return self.call(f"get pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace, missing_ok=True)

    def delete_pod(self, namespace: str, name: str, grace_period_s: int | None = None) -> None:
        """Delete a pod (``grace_period_s=0``: at once, as a SIGKILL); raise DeploymentError if refused."""
        from kubernetes import client

        body = client.V1DeleteOptions(grace_period_seconds=grace_period_s) if grace_period_s is not None else None
        self.call(f"delete pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace, body=body)

    def list_events(self, namespace: str) -> list[Any]:
        """Return the namespace's events (CoreV1Event)."""
        result = self.call(f"list events in {namespace}", self.core.list_namespaced_event, namespace)
        return list(result.items or [])

    def wait_rollout(self, namespace: str, name: str, *, timeout_s: float = 300.0, poll_s: float = 1.0) -> None:
        """Return once the Deployment's rollout is complete, as ``kubectl rollout status`` judges it.

        Raises DeploymentError on a timeout (saying how far it got) or when the rollout reports
        ProgressDeadlineExceeded.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            deployment = self.read_deployment(namespace, name)
            done, progress = rollout_progress(deployment)
            if done:
                return
            for condition in (deployment.status.conditions or []) if deployment.status else []:
                if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
                    raise DeploymentError(f"deployment {namespace}/{name} rollout failed: {condition.message}")
            if time.monotonic() >= deadline:
                raise DeploymentError(f"deployment {namespace}/{name} not rolled out after {timeout_s:g} s: {progress}")
            time.sleep(poll_s)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.api.close()


def rollout_progress(deployment: Any) -> tuple[bool, str]:
    """Return (complete, description) for a V1Deployment, using kubectl's rollout-status rules."""
    spec_replicas = deployment.spec.replicas if deployment.spec and deployment.spec.replicas is not None else 1
    status = deployment.status
    generation = deployment.metadata.generation or 0
    observed = (status.observed_generation if status else None) or 0
    updated = (status.updated_replicas if status else None) or 0
    replicas = (status.replicas if status else None) or 0
    available = (status.available_replicas if status else None) or 0
    if observed < generation:
        return False, "waiting for the controller to observe the new generation"
    if updated < spec_replicas:
        return False, f"{updated} of {spec_replicas} replicas updated"
    if replicas > updated:
        return False, f"{replicas - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {spec_replicas} replicas available"


def _api_error_text(exc: Any) -> str:
    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")[:300]
    hint = " (the ServiceAccount or user lacks this permission)" if exc.status == 403 else ""
    return f"HTTP {exc.status} {exc.reason}: {message}{hint}".rstrip(": ")
