"""A team's own Deployment, written by hand as a team would (not rendered by the harness): its own
labels, a sidecar before its server container, port 8080 by name, its own probe paths and timings,
a 45 s grace period; and a neighbour Deployment in the same namespace that nothing may touch.

Shared by the attach tests (tests/platforms/kubernetes/test_attach.py) and the chaos run against it
(tests/chaos/test_kubernetes_target.py)."""

from __future__ import annotations

import copy
from typing import Any

NS = "team"
NAME = "team-llm"
NEIGHBOUR = "other-app"
POD_LABELS = {"app": NAME, "tier": "serving"}
PROBES = {
    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 6},
    "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 15, "timeoutSeconds": 3},
    "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 60},
}


def team_deployment(*, replicas: int = 2, name: str = NAME, labels: dict[str, str] | None = None,
                    ports: bool = True, probes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the team's Deployment manifest (``probes`` replaces its probes; ``ports=False`` declares none)."""
    labels = dict(labels or POD_LABELS)
    server: dict[str, Any] = {"name": "server", "image": "registry.example/team-llm:2.4.1",
                              **copy.deepcopy(PROBES if probes is None else probes)}
    if ports:
        server["ports"] = [{"name": "http", "containerPort": 8080}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": labels["app"], "owner": "ml-platform"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 45,
                         "containers": [{"name": "proxy", "image": "registry.example/proxy:1"}, server]},
            },
        },
    }


def neighbour_deployment() -> dict[str, Any]:
    """Return another team's Deployment in the same namespace (one replica, labels of its own)."""
    return team_deployment(replicas=1, name=NEIGHBOUR, labels={"app": NEIGHBOUR, "tier": "batch"})


def add_team(cluster: Any, **changes: Any) -> None:
    """Create the team's Deployment (with ``changes``) and the neighbour in ``cluster``, then forget the
    requests: what follows is the harness's."""
    cluster.add_deployment(team_deployment(**changes))
    cluster.add_deployment(neighbour_deployment())
    cluster.requests.clear()


def writes(cluster: Any) -> list[tuple[str, str]]:
    """Return the requests that would change a Deployment: any create, update, patch or delete of one."""
    return [(method, url) for method, url in cluster.requests
            if method in ("POST", "PUT", "PATCH", "DELETE") and "/deployments" in url]
