"""The local platform (the embedded default): every replica a process on this machine behind a front balancer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import ServiceSpec
from harness.platforms.local.deployment import LocalDeployment, replica_names, service_command

__all__ = ["LocalDeployment", "deploy_local", "replica_names", "service_command"]


def deploy_local(spec: ServiceSpec, *, workdir: Path, cpus: Sequence[int] | None = None, **options: Any) -> LocalDeployment:
    """Return a started local deployment of ``spec`` (not yet waited Ready); raise DeploymentError.

    Options: ``state_path`` (default workdir/state.json), ``fault_token`` (default: generated),
    ``command`` (argv with "{port}", or a callable port -> argv, replacing the reference service),
    ``extra_args`` (appended to the service's argv), ``env`` (extra environment), ``use_cgroups``
    (False forces the RLIMIT_AS / no-CPU-limit fallback), ``python`` (interpreter for the children).
    """
    return LocalDeployment(spec, workdir=workdir, cpus=cpus, **options).start()
