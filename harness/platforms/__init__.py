"""Platforms deploy a service spec: ``local`` (the embedded default) and ``kubernetes``.

``deploy(spec, workdir=...)`` returns a `Deployment`: a context manager whose exit tears everything
down. Its events (events.jsonl) and state file are plain JSON that outside tools can read too.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import ServiceSpec
from harness.errors import ConfigError, PlatformUnavailable
from harness.platforms.base import Deployment, Event, ReplicaStatus, read_events, read_replica, read_state

__all__ = ["PLATFORMS", "deploy", "Deployment", "Event", "ReplicaStatus", "read_events", "read_state", "read_replica"]

PLATFORMS = ("local", "kubernetes")


def deploy(
    spec: ServiceSpec,
    *,
    platform: str = "local",
    workdir: Path,
    cpus: Sequence[int] | None = None,
    **options: Any,
) -> Deployment:
    """Deploy ``spec`` on ``platform``; return the started Deployment (call ``wait_ready`` next).

    ``cpus`` pins the replicas to those CPU ids on the local platform (a cluster places pods itself, so
    kubernetes ignores it). Platform-specific ``options`` are passed on
    (see `harness.platforms.local.deploy_local`); a spec's ``deployment`` target is attached to as it is on
    its cluster (`harness.platforms.kubernetes.attach.attach_deployment`), never deployed. Raises ConfigError for an unknown platform,
    PlatformUnavailable where the platform cannot be reached, DeploymentError if deploying fails.
    """
    attached = spec.target_kind == "deployment"  # a team's existing Deployment: attached to on its cluster
    if platform == "local":
        if attached:
            name = "deployment" if spec.target.deployment is not None else "selector"
            raise ConfigError(f"target.{name}", getattr(spec.target, name),
                              "an existing Kubernetes Deployment is attached to with --platform kubernetes")
        from harness.platforms.local import deploy_local

        return deploy_local(spec, workdir=Path(workdir), cpus=cpus, **options)
    if platform == "kubernetes":
        if spec.target is not None and not attached:  # a command or endpoint is the local platform's
            raise ConfigError("target", spec.target_kind, "a command or endpoint target runs on the local platform")
        try:
            module = importlib.import_module("harness.platforms.kubernetes")
        except ImportError as exc:
            raise PlatformUnavailable(f"the kubernetes platform cannot be loaded: {exc}") from exc
        if attached:
            return module.attach_deployment(spec, workdir=Path(workdir), **options)
        return module.deploy_kubernetes(spec, workdir=Path(workdir), **options)
    raise ConfigError("platform", platform, f"unknown platform; choose one of {', '.join(PLATFORMS)}")
