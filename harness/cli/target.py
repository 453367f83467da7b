"""The ``--platform`` flags shared by `harness run` and `harness chaos run|matrix`, resolved once."""

from __future__ import annotations

import argparse

from harness.platforms.target import ENV_ENDPOINT, ENV_NAMESPACE, PlatformTarget

__all__ = ["add_platform_arguments", "target_from_args"]


def add_platform_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --platform, --namespace, --endpoint and --context (the spec is each command's own --spec)."""
    group = parser.add_argument_group("platform", "where the service runs (default: a fresh local deployment)")
    group.add_argument("--platform", default="local", choices=("local", "kubernetes"),
                       help="local (deploy and tear down here) or kubernetes (attach to the Deployment applied with "
                            "`harness render`; needs --spec or HARNESS_SPEC: the in-cluster runner has both)")
    group.add_argument("--namespace", default=None, help=f"kubernetes: the namespace (default ${ENV_NAMESPACE}, else harness)")
    group.add_argument("--endpoint", default=None, metavar="URL",
                       help=f"kubernetes: the service URL (default ${ENV_ENDPOINT}, else the Service's cluster DNS name; "
                            "from outside the cluster, an address that reaches the Service: a port-forward reaches one pod only); "
                            "local: an http:// server the harness does not deploy, measured behind the local balancer "
                            "(the spec's target.endpoint)")
    group.add_argument("--context", default=None, help="kubernetes: kubeconfig context (default: the current one, or the pod's account)")


def target_from_args(args: argparse.Namespace) -> PlatformTarget:
    """Return the PlatformTarget of the parsed flags (environment filling the gaps); raise ConfigError."""
    return PlatformTarget.resolve(args.platform, namespace=args.namespace, endpoint=args.endpoint,
                                  context=args.context, spec=getattr(args, "spec", None))
