"""`harness render --platform kubernetes`: write a service spec as Kubernetes manifests (YAML).

One file per object, named in apply order, so ``kubectl apply -f OUT`` deploys the service (and,
with ``--runner`` / ``--schedule``, the in-cluster runner Job / nightly CronJob). Prints the paths.
"""

from __future__ import annotations

import argparse
import re
import shlex

from harness.cli._options import add_out
from harness.config import TOPOLOGIES
from harness.errors import ConfigError, HarnessError
from harness.paths import path_type

__all__ = ["register", "run", "runner_command"]

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
    parser.add_argument("--spec", type=path_type("--spec"), metavar="FILE", help="service spec YAML (default: the built-in defaults)")
    parser.add_argument("--topology", choices=TOPOLOGIES, help="override the spec's topology")
    parser.add_argument("--replicas", type=int, help="override the spec's replica count")
    parser.add_argument("--image", default=DEFAULT_IMAGE, metavar="NAME:TAG", help=f"container image (default: {DEFAULT_IMAGE})")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, metavar="NS", help=f"namespace (default: {DEFAULT_NAMESPACE})")
    add_out(parser, default=DEFAULT_OUT, what="output directory of the manifests")
    parser.add_argument("--runner", action="store_true", help="also render the in-cluster runner Job with its RBAC and results volume")
    parser.add_argument("--schedule", metavar="CRON", help="also render a runner CronJob on this schedule, e.g. '0 2 * * *'")
    parser.add_argument("--load-workers", type=int, default=0, metavar="N",
                        help="with the runner: a Deployment of N Locust workers and the Service of their master, the "
                             "runner, whose Locust loads then run distributed over them (default 0: none)")
    parser.add_argument(
        "--load-time-s", type=float, default=MEASURED_LOAD_TIME_S, metavar="S",
        help=f"measured model load time that sizes the startup probe (default: {MEASURED_LOAD_TIME_S:g})",
    )
    parser.add_argument("--hpa-metric", choices=["cpu", "rps"], default="cpu", help="autoscale on CPU 70%% or 100 requests/s per pod")
    parser.add_argument("--max-replicas", type=int, help="autoscaler ceiling (default: twice the replicas)")
    parser.add_argument("--results-volume", choices=["pvc", "emptyDir"], default="pvc", help="where the runner writes results")
    parser.add_argument(
        "--runner-command", metavar="CMD",
        help="the runner's command line, split like a shell's (default: sh -c 'exec harness run nightly --platform "
             "kubernetes --out /results/<UTC time>'); a harness command line is checked as harness would parse it",
    )
    parser.set_defaults(func=run)


def runner_command(text: str) -> tuple[str, ...]:
    """Return ``text`` split like a shell's; raise ConfigError when it cannot run as the Job's command.

    A harness command line, given bare (``harness run smoke ...``) or as ``sh -c 'exec harness ...'``,
    is parsed as harness would parse it, so a typo fails here and not at 02:00 in the cluster.
    """
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError("runner_command", text, f"not a valid command line: {exc}") from None
    if not words:
        raise ConfigError("runner_command", text, "must name a command")
    if words[0] == "exec":
        raise ConfigError("runner_command", text, "exec is a shell builtin, not a program: give the command itself "
                                                  "(harness run ...) or a shell line (sh -c 'exec harness run ...')")
    harness_words = list(words[1:]) if words[0] == "harness" else None
    if words[:2] == ("sh", "-c") and len(words) >= 3:
        script = _shell_words(text, words[2])
        script = script[1:] if script[:1] == ["exec"] else script
        if script[:1] == ["harness"]:
            harness_words = script[1:]
    if harness_words is not None:
        _check_harness_words(text, harness_words)
    return words


def _shell_words(text: str, line: str) -> list[str]:
    """Return the words of a one-command shell line; [] for a line with operators or redirections
    (a pipeline or a list is the shell's to run, not a harness command line to check)."""
    line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)  # a command substitution is one word to the shell
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise ConfigError("runner_command", text, f"the shell line is not valid: {exc}") from None
    if any(token and set(token) <= set("();<>|&") for token in tokens):
        return []
    return tokens


def _check_harness_words(text: str, words: list[str]) -> None:
    import contextlib
    import io

    from harness.cli import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(words)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0: they run
            message = (errors.getvalue().strip().splitlines() or ["harness would refuse it"])[-1]
            raise ConfigError("runner_command", text, f"harness would refuse it: {message}") from None
        return
    except HarnessError as exc:  # argparse's own error, or a flag's type= converter (an empty path)
        raise ConfigError("runner_command", text, f"harness would refuse it: {exc}") from None
    if getattr(args, "platform", None) == "local":
        raise ConfigError("runner_command", text, "would deploy a service of its own inside the runner pod (the local "
                                                  "platform): add --platform kubernetes to attach to the applied Deployment")


def run(args: argparse.Namespace) -> int:
    """Render and write the manifests; print each path. Raises ConfigError (exit 2) for bad input."""
    from harness.config import load_spec
    from harness.platforms.kubernetes.options import RenderOptions
    from harness.platforms.kubernetes.render import render_manifests, write_manifests

    spec = load_spec(args.spec, topology=args.topology, replicas=args.replicas)
    extra = {}
    if args.runner_command is not None:
        extra["runner_command"] = runner_command(args.runner_command)
    options = RenderOptions(
        image=args.image, namespace=args.namespace, load_time_s=args.load_time_s, hpa_metric=args.hpa_metric,
        max_replicas=args.max_replicas, runner=args.runner, schedule=args.schedule, results_volume=args.results_volume,
        load_workers=args.load_workers, **extra,
    )
    for path in write_manifests(render_manifests(spec, options), args.out):
        print(path)
    return 0
