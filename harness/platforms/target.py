"""Where a harness command runs its service: a fresh local deployment, or a Kubernetes Deployment
that an operator already applied (the in-cluster runner's case).

`PlatformTarget.resolve` is the one place where the flags, the runner's environment and the defaults
meet, in that order of precedence: ``--namespace`` over ``HARNESS_NAMESPACE`` over ``harness``, and
the same for the endpoint (``HARNESS_ENDPOINT``), the spec file (``HARNESS_SPEC``) and the context.
On Kubernetes the harness *attaches*: it reads the pods, deletes them for a kill and reads events
(exactly `harness.platforms.kubernetes.rbac.RUNNER_RULES`), never creates or deletes the service.
So the topology is the applied Deployment's, and a spec overlay an experiment asks for cannot be
applied: both are reported, not silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.paths import resolve_path

__all__ = ["ENV_NAMESPACE", "ENV_DEPLOYMENT", "ENV_SELECTOR", "ENV_READY_PATH", "ENV_ENDPOINT", "ENV_SPEC", "ENV_CONTEXT",
           "PlatformTarget"]

ENV_NAMESPACE = "HARNESS_NAMESPACE"
ENV_DEPLOYMENT = "HARNESS_K8S_DEPLOYMENT"
ENV_SELECTOR = "HARNESS_K8S_SELECTOR"  # the pods' label selector (a team's Deployment has its own labels)
ENV_READY_PATH = "HARNESS_READY_PATH"  # the readiness path asked through the Service (its own probe's)
ENV_ENDPOINT = "HARNESS_ENDPOINT"
ENV_SPEC = "HARNESS_SPEC"
ENV_CONTEXT = "KUBERNETES_CONTEXT"  # chaostoolkit-kubernetes's kubeconfig context
DEFAULT_NAMESPACE = "harness"  # as harness.platforms.kubernetes.options, without importing the client


@dataclass(frozen=True)
class PlatformTarget:
    """The platform a run deploys to (``local``) or attaches to (``kubernetes``)."""

    platform: str = "local"
    namespace: str | None = None  # kubernetes only
    endpoint: str | None = None  # kubernetes: the Service URL (None: its cluster DNS name); local: an endpoint target
    context: str | None = None  # kubernetes: kubeconfig context; None = current (or the pod's account)
    spec_path: Path | None = None  # the applied service spec (kubernetes: required to know its shape)

    @property
    def is_kubernetes(self) -> bool:
        return self.platform == "kubernetes"

    @classmethod
    def resolve(cls, platform: str = "local", *, namespace: str | None = None, endpoint: str | None = None,
                context: str | None = None, spec: str | Path | None = None,
                environ: dict[str, str] | None = None) -> "PlatformTarget":
        """Return the target for these flags, filling the gaps from the environment; raise ConfigError.

        ``local`` takes no cluster flag (each names itself in the error); its ``--endpoint`` is the spec's
        endpoint target (`spec_overlay`). ``kubernetes`` needs the
        spec of what was applied: ``--spec`` or ``HARNESS_SPEC`` (the runner's ConfigMap).
        """
        env = os.environ if environ is None else environ
        if platform not in ("local", "kubernetes"):
            raise ConfigError("--platform", platform, "choose local or kubernetes")
        if platform == "local":
            for flag, value in (("--namespace", namespace), ("--context", context)):
                if value is not None:
                    raise ConfigError(flag, value, "only applies with --platform kubernetes")
            if endpoint is not None and not endpoint.startswith("http://"):
                raise ConfigError("--endpoint", endpoint, "must be an http:// URL of the server (the local balancer "
                                  "in front of it speaks plain HTTP)")
            # a server the harness does not deploy: the spec's endpoint target (`spec_overlay`)
            return cls("local", endpoint=endpoint.rstrip("/") if endpoint else None,
                       spec_path=resolve_path(spec, "--spec") if spec is not None else None)
        namespace = namespace or env.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE
        endpoint = endpoint or env.get(ENV_ENDPOINT) or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError("--endpoint", endpoint, "must be an http:// or https:// URL of the service")
        spec_value = spec if spec is not None else env.get(ENV_SPEC)
        if not spec_value:
            raise ConfigError("--spec", None, f"--platform kubernetes needs the applied service spec: give --spec FILE "
                                              f"or set {ENV_SPEC} (the runner Job mounts it)")
        spec_path = resolve_path(spec_value, "--spec")  # $HARNESS_SPEC enters here, relative or not
        if not spec_path.is_file():
            raise ConfigError("--spec", str(spec_path), "no such file")
        return cls("kubernetes", namespace=namespace, endpoint=endpoint.rstrip("/") if endpoint else None,
                   context=context, spec_path=spec_path)

    @property
    def own_spec(self) -> bool:
        """True on the local platform given a spec file or an endpoint: a team's own server (or service spec),
        deployed and measured in place of the reference service's preset specs."""
        return not self.is_kubernetes and (self.spec_path is not None or self.endpoint is not None)

    def spec_overlay(self) -> dict[str, Any]:
        """Return what this target adds to the spec: on the local platform ``--endpoint`` is the spec's endpoint
        target (`harness.targetspec`), put behind the local balancer; nothing otherwise."""
        if self.is_kubernetes or self.endpoint is None:
            return {}
        return {"target": {"endpoint": self.endpoint}}

    def deploy_options(self) -> dict[str, Any]:
        """Return the options `harness.platforms.deploy` needs for this target (attach, never apply)."""
        if not self.is_kubernetes:
            return {}
        return {"namespace": self.namespace, "endpoint": self.endpoint, "context": self.context, "apply": False}

    def experiment_env(self, deployment: Any) -> dict[str, str]:
        """Return the environment the Kubernetes experiment files read, pointing at ``deployment``: its name,
        and where it has them its pods' selector and readiness path (a team's own Deployment's)."""
        if not self.is_kubernetes:
            return {}
        env = {ENV_NAMESPACE: self.namespace or DEFAULT_NAMESPACE,
               ENV_DEPLOYMENT: getattr(deployment, "name", None) or deployment.spec.name,
               ENV_ENDPOINT: deployment.endpoint, "HARNESS_FAULT_TOKEN": deployment.fault_token or ""}
        for key, attribute in ((ENV_SELECTOR, "label_selector"), (ENV_READY_PATH, "ready_path")):
            if getattr(deployment, attribute, None):
                env[key] = getattr(deployment, attribute)
        if self.context:  # chaosk8s reads it: the experiments then act on the cluster the harness watches
            env[ENV_CONTEXT] = self.context
        return env

    def describe(self) -> dict[str, Any]:
        """Return the target as JSON-ready data (recorded in run.json's config)."""
        return {"platform": self.platform, "namespace": self.namespace, "endpoint": self.endpoint,
                "context": self.context, "spec": str(self.spec_path) if self.spec_path else None}
