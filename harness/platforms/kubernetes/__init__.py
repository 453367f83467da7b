"""The Kubernetes platform: render a service spec to hardened manifests (and the in-cluster runner),
apply them with the official client, and drive the result through the same Deployment interface as
the local platform; or attach to a team's own Deployment as it is (`attach_deployment`).

The client library is imported only when a cluster is used, so rendering stays fast and works
without one.
"""

from __future__ import annotations

from harness.platforms.kubernetes.attach import AttachedDeployment, attach_deployment
from harness.platforms.kubernetes.client import KubernetesClient, kubeconfig_paths
from harness.platforms.kubernetes.deployment import KubernetesDeployment, deploy_kubernetes
from harness.platforms.kubernetes.options import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    MEASURED_LOAD_TIME_S,
    RenderOptions,
    validate_render_options,
)
from harness.platforms.kubernetes.rbac import CHAOS_ACTIVITIES, RUNNER_RULES, Rule
from harness.platforms.kubernetes.render import render_manifests, write_manifests

__all__ = [
    "AttachedDeployment",
    "CHAOS_ACTIVITIES",
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "MEASURED_LOAD_TIME_S",
    "RUNNER_RULES",
    "KubernetesClient",
    "KubernetesDeployment",
    "RenderOptions",
    "Rule",
    "attach_deployment",
    "deploy_kubernetes",
    "kubeconfig_paths",
    "render_manifests",
    "validate_render_options",
    "write_manifests",
]
