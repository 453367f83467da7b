"""Chaos Toolkit activities for the Kubernetes variants where chaostoolkit-kubernetes has none.

chaosk8s kills pods and reads their state; it cannot roll a Deployment out to a slower-starting
version, which is how a slow model load reaches a cluster (a new image or model whose load outlasts
the probes). These activities do that with only the verbs the runner's Role grants (deployments
get/patch, pods list; see `harness.platforms.kubernetes.rbac`):

- `set_startup_delay` patches the service container's args (``--startup-delay-s``,
  ``--no-live-during-load``) and optionally its startupProbe, keeping the previous container in
  an annotation; `restore_deployment` patches it back (the experiments' rollback);
- `wait_for_crash_loop` waits until a pod of the selector is in CrashLoopBackOff.

The API client is chaosk8s's own (`create_k8s_api_client`), so kubeconfig, in-pod service account
(``CHAOSTOOLKIT_IN_POD``) and secrets behave as in every chaosk8s activity.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

__all__ = ["ORIGINAL_ANNOTATION", "set_startup_delay", "restore_deployment", "wait_for_crash_loop"]

ORIGINAL_ANNOTATION = "harness.io/chaos-original-container"
_POLL_S = 2.0


def _apps(secrets: dict | None):
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    return client.AppsV1Api(create_k8s_api_client(secrets))


def _core(secrets: dict | None):
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    return client.CoreV1Api(create_k8s_api_client(secrets))


def _api_error(action: str, exc: Exception) -> ActivityFailed:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or str(exc)
    return ActivityFailed(f"{action}: {status or ''} {reason}".strip())


def _container(deployment: Any, container: str | None) -> Any:
    containers = deployment.spec.template.spec.containers
    for item in containers:
        if container is None or item.name == container:
            return item
    raise ActivityFailed(f"no container {container!r} in deployment {deployment.metadata.name} ({', '.join(c.name for c in containers)})")


def _with_startup_args(args: list[str], delay_s: float, live_during_load: bool) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--startup-delay-s":
            skip = True
            continue
        if arg in ("--live-during-load", "--no-live-during-load") or arg.startswith("--startup-delay-s="):
            continue
        out.append(arg)
    return out + ["--startup-delay-s", f"{delay_s:g}", "--live-during-load" if live_during_load else "--no-live-during-load"]


def set_startup_delay(
    name: str,
    ns: str = "default",
    delay_s: float = 120.0,
    live_during_load: bool = False,
    startup_probe: dict[str, Any] | None = None,
    container: str | None = None,
    secrets: dict | None = None,
) -> dict[str, Any]:
    """Roll Deployment ``name`` out to a version whose start-up takes ``delay_s`` longer.

    With ``startup_probe`` (a Kubernetes probe mapping) the new version also gets that startupProbe
    (the fix); without it, the existing probes decide. The previous container is kept in the
    ``harness.io/chaos-original-container`` annotation for `restore_deployment`. Returns the new args.
    """
    from kubernetes.client.rest import ApiException

    api = _apps(secrets)
    try:
        deployment = api.read_namespaced_deployment(name, ns)
    except ApiException as exc:
        raise _api_error(f"reading deployment {ns}/{name}", exc) from None
    target = _container(deployment, container)
    annotations = deployment.metadata.annotations or {}
    original = annotations.get(ORIGINAL_ANNOTATION) or json.dumps(
        {"name": target.name, "args": list(target.args or []),
         "startupProbe": api.api_client.sanitize_for_serialization(target.startup_probe)}
    )
    args = _with_startup_args(list(target.args or []), float(delay_s), bool(live_during_load))
    patch_container: dict[str, Any] = {"name": target.name, "args": args}
    if startup_probe is not None:
        patch_container["startupProbe"] = startup_probe
    body = {
        "metadata": {"annotations": {ORIGINAL_ANNOTATION: original}},
        "spec": {"template": {"spec": {"containers": [patch_container]}}},
    }
    try:
        api.patch_namespaced_deployment(name, ns, body)
    except ApiException as exc:
        raise _api_error(f"patching deployment {ns}/{name}", exc) from None
    return {"deployment": name, "args": args, "startup_probe": startup_probe, "time_s": time.time()}


def restore_deployment(name: str, ns: str = "default", secrets: dict | None = None) -> dict[str, Any]:
    """Roll Deployment ``name`` back to the container `set_startup_delay` saved; no-op if none was saved."""
    from kubernetes.client.rest import ApiException

    api = _apps(secrets)
    try:
        deployment = api.read_namespaced_deployment(name, ns)
    except ApiException as exc:
        raise _api_error(f"reading deployment {ns}/{name}", exc) from None
    saved = (deployment.metadata.annotations or {}).get(ORIGINAL_ANNOTATION)
    if not saved:
        return {"deployment": name, "restored": False}
    original = json.loads(saved)
    body = {
        # "" rather than null: a JSON merge patch deletes on null, some API front ends store it instead
        "metadata": {"annotations": {ORIGINAL_ANNOTATION: ""}},
        "spec": {"template": {"spec": {"containers": [
            {"name": original["name"], "args": original["args"], "startupProbe": original.get("startupProbe")}
        ]}}},
    }
    try:
        api.patch_namespaced_deployment(name, ns, body)
    except ApiException as exc:
        raise _api_error(f"patching deployment {ns}/{name}", exc) from None
    return {"deployment": name, "restored": True, "args": original["args"]}


def wait_for_crash_loop(label_selector: str, ns: str = "default", min_restarts: int = 2, timeout_s: float = 300.0,
                        secrets: dict | None = None) -> list[dict[str, Any]]:
    """Wait until a pod matching ``label_selector`` waits in CrashLoopBackOff after ``min_restarts``
    restarts; return each such pod's name, restarts and last termination reason. Fails at ``timeout_s``."""
    from kubernetes.client.rest import ApiException

    api = _core(secrets)
    deadline = time.monotonic() + float(timeout_s)
    seen: list[str] = []
    while True:
        try:
            pods = api.list_namespaced_pod(ns, label_selector=label_selector).items
        except ApiException as exc:
            raise _api_error(f"listing pods {label_selector!r} in {ns}", exc) from None
        looping, seen = [], []
        for pod in pods:
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                reason = waiting.reason if waiting else ("running" if status.state and status.state.running else "?")
                seen.append(f"{pod.metadata.name}: {reason}, restarts={status.restart_count}")
                if waiting and waiting.reason == "CrashLoopBackOff" and status.restart_count >= min_restarts:
                    last = status.last_state.terminated if status.last_state else None
                    looping.append({"pod": pod.metadata.name, "restarts": status.restart_count,
                                    "last_reason": last.reason if last else None, "last_exit_code": last.exit_code if last else None})
        if looping:
            return looping
        if time.monotonic() > deadline:
            raise ActivityFailed(f"no pod in CrashLoopBackOff after {timeout_s:g}s ({'; '.join(seen) or 'no pods'})")
        time.sleep(_POLL_S)
