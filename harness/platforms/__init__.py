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
    (see `harness.platforms.local.deploy_local`). Raises ConfigError for an unknown platform,
    PlatformUnavailable where the platform cannot be reached, DeploymentError if deploying fails.
    """
    if platform == "local":
        from harness.platforms.local import deploy_local

        return deploy_local(spec, workdir=Path(workdir), cpus=cpus, **options)
    if platform == "kubernetes":
        if spec.target is not None:  # the harness attaches to an applied Deployment; a target is the local platform's
            raise ConfigError("target", spec.target_kind, "a command or endpoint target runs on the local platform")
        try:
            module = importlib.import_module("harness.platforms.kubernetes")
        except ImportError as exc:
            raise PlatformUnavailable(f"the kubernetes platform cannot be loaded: {exc}") from exc
        return module.deploy_kubernetes(spec, workdir=Path(workdir), **options)
    raise ConfigError("platform", platform, f"unknown platform; choose one of {', '.join(PLATFORMS)}")
