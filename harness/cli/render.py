"""`harness render --platform kubernetes`: write a service spec as Kubernetes manifests (YAML).

One file per object, named in apply order, so ``kubectl apply -f OUT`` deploys the service (and,
with ``--runner`` / ``--schedule``, the in-cluster runner Job / nightly CronJob). Prints the paths.
"""

from __future__ import annotations

import argparse
import shlex

from harness.config import TOPOLOGIES
from harness.errors import ConfigError

__all__ = ["register", "run"]

DEFAULT_OUT = "k8s"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``render`` subcommand."""
    from harness.platforms.kubernetes.options import DEFAULT_IMAGE, DEFAULT_NAMESPACE, MEASURED_LOAD_TIME_S

    parser = subparsers.add_parser(
        "render",
        help="write a service spec as platform manifests (Kubernetes YAML)",
        description="Render a service spec to Kubernetes manifests, one YAML file per object, in apply order.",
    )
    parser.add_argument("--platform", choices=["kubernetes"], default="kubernetes", help="target platform (default: kubernetes)")
    parser.add_argument("--spec", metavar="FILE", help="service spec YAML (default: the built-in defaults)")
    parser.add_argument("--topology", choices=TOPOLOGIES, help="override the spec's topology")
    parser.add_argument("--replicas", type=int, help="override the spec's replica count")
    parser.add_argument("--image", default=DEFAULT_IMAGE, metavar="NAME:TAG", help=f"container image (default: {DEFAULT_IMAGE})")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, metavar="NS", help=f"namespace (default: {DEFAULT_NAMESPACE})")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--runner", action="store_true", help="also render the in-cluster runner Job with its RBAC and results volume")
    parser.add_argument("--schedule", metavar="CRON", help="also render a runner CronJob on this schedule, e.g. '0 2 * * *'")
    parser.add_argument(
        "--load-time-s", type=float, default=MEASURED_LOAD_TIME_S, metavar="S",
        help=f"measured model load time that sizes the startup probe (default: {MEASURED_LOAD_TIME_S:g})",
    )
    parser.add_argument("--hpa-metric", choices=["cpu", "rps"], default="cpu", help="autoscale on CPU 70%% or 100 requests/s per pod")
    parser.add_argument("--max-replicas", type=int, help="autoscaler ceiling (default: twice the replicas)")
    parser.add_argument("--results-volume", choices=["pvc", "emptyDir"], default="pvc", help="where the runner writes results")
    parser.add_argument(
        "--runner-command", metavar="CMD",
        help="the runner's command line (default: every experiment in experiments/kubernetes/ through `chaos run`, "
             "journals in /results/<UTC time>/)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render and write the manifests; print each path. Raises ConfigError (exit 2) for bad input."""
    from harness.config import load_spec
    from harness.platforms.kubernetes.options import RenderOptions
    from harness.platforms.kubernetes.render import render_manifests, write_manifests

    spec = load_spec(args.spec, topology=args.topology, replicas=args.replicas)
    extra = {}
    if args.runner_command is not None:
        try:
            extra["runner_command"] = tuple(shlex.split(args.runner_command))
        except ValueError as exc:
            raise ConfigError("runner_command", args.runner_command, f"not a valid command line: {exc}") from None
    options = RenderOptions(
        image=args.image, namespace=args.namespace, load_time_s=args.load_time_s, hpa_metric=args.hpa_metric,
        max_replicas=args.max_replicas, runner=args.runner, schedule=args.schedule, results_volume=args.results_volume,
        **extra,
    )
    for path in write_manifests(render_manifests(spec, options), args.out):
        print(path)
    return 0
