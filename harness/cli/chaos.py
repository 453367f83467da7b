"""`harness chaos`: run Chaos Toolkit experiments under load and judge recovery against SLA tiers.

    harness chaos run EXPERIMENT --topology T [--preset smoke|nightly] [--spec FILE] [--tier NAME] --out DIR
    harness chaos matrix [--faults a,b] [--topologies single,active-standby,multi-active] [--preset smoke] [--retry] --out DIR
    harness chaos run|matrix ... --platform kubernetes [--spec FILE] [--namespace NS] [--endpoint URL] [--context C]
    harness chaos validate EXPERIMENT...
    harness chaos spec EXPERIMENT [--topology T] [--preset P] [--spec FILE]   (the spec for `harness up --spec`)

Exit codes: `harness.cli._exit_codes` (the end of each action's ``--help``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli._options import add_out, add_preset
from harness.cli.target import add_platform_arguments, target_from_args
from harness.errors import EXIT_INTERRUPTED, ConfigError, UsageError, VerdictFailed
from harness.paths import path_type, resolve_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chaos", help="chaos experiments under load, judged against SLA tiers")
    commands = parser.add_subparsers(dest="chaos_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _missing_action(parser))

    run = commands.add_parser("run", help="run one experiment against a fresh local deployment (or an applied Kubernetes one)")
    run.add_argument("experiment", help="Chaos Toolkit experiment file (experiments/<fault>.json; "
                                        "experiments/kubernetes/<fault>.json with --platform kubernetes)")
    _common(run)
    add_platform_arguments(run)
    run.add_argument("--tier", default=None, help="SLA tier to meet (default: the topology's own tier)")
    _sla_argument(run)
    add_out(run, required=True, what="directory for result.json, journal.json, timeline, ...")
    run.set_defaults(func=_run)

    matrix = commands.add_parser("matrix", help="run each fault against each topology; write matrix.csv and matrix.md")
    matrix.add_argument("--faults", default=None, help="comma-separated faults (default: every experiment in --experiments)")
    matrix.add_argument("--topologies", default=None, help="comma-separated topologies (default: all three; on "
                                                           "Kubernetes, the applied Deployment's)")
    matrix.add_argument("--experiments", type=path_type("--experiments"), default=None,
                        help="directory of experiment files (default: experiments/, or experiments/kubernetes/)")
    add_preset(matrix)
    matrix.add_argument("--spec", type=path_type("--spec"), default=None, help="service spec YAML replacing the preset's base spec")
    matrix.add_argument("--retry", action="store_true", help="balancer retries a failed connection on another replica")
    matrix.add_argument("--tier", default=None, help="SLA tier every cell must meet (default: each topology's own)")
    _sla_argument(matrix)
    add_out(matrix, required=True, what="directory for matrix.csv, matrix.md and one folder per cell")
    add_platform_arguments(matrix)
    matrix.set_defaults(func=_matrix)

    validate = commands.add_parser("validate", help="validate experiment files as `chaos validate` does, plus the harness extension")
    validate.add_argument("experiments", nargs="+", type=path_type("EXPERIMENT"))
    validate.set_defaults(func=_validate)

    spec = commands.add_parser("spec", help="print the service spec an experiment deploys (for `harness up --spec`)")
    spec.add_argument("experiment")
    _common(spec)
    spec.set_defaults(func=_spec)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default=None, help="single (default; a drill's first topology), active-standby "
                                                       "or multi-active (on Kubernetes: the applied Deployment's)")
    add_preset(parser)
    parser.add_argument("--spec", type=path_type("--spec"), default=None, help="service spec YAML replacing the preset's base spec")
    parser.add_argument("--retry", action="store_true", default=None, help="balancer retries a failed connection on another replica")


def _sla_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sla", type=path_type("--sla"), default=None, metavar="FILE",
                        help="SLA file (YAML): tiers, period_days, faults_per_day, fault_rates_per_day, thresholds "
                             "(default: the tiers of harness.measure.sla, one fault a day)")


def _missing_action(parser: argparse.ArgumentParser) -> int:
    raise UsageError(f"choose an action: {parser.prog} run|matrix|validate|spec (see {parser.prog} --help)")


def _topology(value: str) -> str:
    from harness.config import TOPOLOGIES

    if value not in TOPOLOGIES:
        raise ConfigError("topology", value, f"choose one of {', '.join(TOPOLOGIES)}")
    return value


def _settings(args: argparse.Namespace, experiment_path: str | Path):
    from harness.chaos.experiment import load_experiment, merge_spec
    from harness.chaos.presets import get_chaos_preset
    from harness.chaos.settings import ChaosRunSettings
    from harness.config import load_spec_data

    target = target_from_args(args) if hasattr(args, "platform") else None
    preset = get_chaos_preset(args.preset)
    experiment = load_experiment(_experiment_path(experiment_path, kubernetes=bool(target and target.is_kubernetes)))
    spec_file = target.spec_path if target is not None and target.is_kubernetes else args.spec
    spec_data = load_spec_data(spec_file) if spec_file is not None else None
    topology = args.topology
    if topology is None:
        topologies = experiment.extension.topologies  # a drill may name its own (autoscaling: multi-active)
        local_default = "single" if "single" in topologies else topologies[0]
        topology = merge_spec(spec_data).topology if target is not None and target.is_kubernetes else local_default
    settings = ChaosRunSettings(
        experiment=experiment, topology=_topology(topology), preset=preset,
        spec_data=spec_data, tier=getattr(args, "tier", None), retry=args.retry or None, sla=_sla(args),
        **({"target": target} if target is not None else {}),
    )
    if target is not None and target.platform not in experiment.extension.platforms:
        raise ConfigError("experiment", str(experiment.path), f"is for {', '.join(experiment.extension.platforms)}, "
                          f"not {target.platform} (extensions[harness].platforms)")
    return settings


def _experiment_path(value: str | Path, *, kubernetes: bool = False) -> Path:
    path = resolve_path(value, "experiment")
    if path.exists() or path.suffix:
        return path
    # `harness chaos run pod-kill` names the shipped file: experiments/ here, else the one beside the package
    from harness.chaos.matrix import default_experiments_dir

    return resolve_path(default_experiments_dir() / ("kubernetes" if kubernetes else "") / f"{value}.json", "experiment")


def _progress(message: str) -> None:
    print(f"harness chaos: {message}", file=sys.stderr, flush=True)


def _sla(args: argparse.Namespace):
    """Return the SLA config of ``--sla`` (None: the defaults); ConfigError names a bad field."""
    from harness.measure.sla_config import load_sla_config

    path = getattr(args, "sla", None)
    return load_sla_config(path) if path is not None else None


def _run(args: argparse.Namespace) -> int:
    from harness.workflows.chaos import ChaosRun
    from harness.workflows.context import RunContext

    settings = _settings(args, args.experiment)
    context = RunContext(args.out, platform=settings.target.platform, progress=_progress)
    result = ChaosRun(settings, context).execute()
    if result["outcome"] == "skipped":  # a fault this target cannot take: not a failure
        print(f"{result['experiment']} x {result['topology']}: skipped ({'; '.join(result['reasons'])})")
        return 0
    print(_summary_line(result))
    if result.get("tokens"):
        print(_tokens_line(result))
    if result["aborted"]:
        print(f"harness chaos: interrupted; result recorded as aborted in {args.out / 'result.json'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result["outcome"] == "inconclusive":
        print(f"harness chaos: tier {result['tier']} inconclusive (not a failure):", file=sys.stderr)
        for reason in result["reasons"]:
            print(f"  - {reason}", file=sys.stderr)
    if result["outcome"] in ("not met", "error"):
        raise VerdictFailed(f"{result['experiment']} on {result['topology']}: tier {result['tier']} {result['outcome']}",
                            result["reasons"])
    return 0


def _summary_line(result: dict) -> str:
    def fmt(value, unit="", digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    budget = result.get("budget") or {}
    burn = budget.get("projected_burn")
    return (
        f"{result['experiment']} x {result['topology']}: TTR {fmt(result.get('ttr_s'), ' s')}, "
        f"client-side outage {fmt(result.get('outage_s'), ' s')}, unavailability {fmt(result.get('unavailability_s'), ' s')}, "
        f"failed {result.get('failed_requests')}/{result.get('total_requests')}, "
        f"projected burn {fmt(None if burn is None else burn * 100, '%', 2)} of the {result['tier']} error budget, "
        f"p99 before/during/after {fmt(result.get('p99_ms_before'), '', 1)}/{fmt(result.get('p99_ms_during'), '', 1)}/"
        f"{fmt(result.get('p99_ms_after'), ' ms', 1)}, tier {result['tier']} {result.get('outcome')}, "
        f"behaviour {'seen' if result.get('behaviour_seen') else 'NOT seen'}"
    )


def _tokens_line(result: dict) -> str:
    """The token figures of a generative load, before and from the injection (TTFT p50/p99, ITL p99, goodput)."""
    def part(name: str) -> str:
        figures = result.get(name)
        if not figures:
            return "n/a"
        def ms(key):
            value = figures.get(key)
            return "n/a" if value is None or value != value else f"{value:.1f}"
        return (f"TTFT p50/p99 {ms('ttft_p50_ms')}/{ms('ttft_p99_ms')} ms, ITL p99 {ms('itl_p99_ms')} ms, "
                f"goodput {figures['good']}/{figures['requests']}")

    return f"  tokens before the fault: {part('tokens_before')}; from it: {part('tokens_after')}"


def _matrix(args: argparse.Namespace) -> int:
    from harness.chaos.matrix import MatrixPlan
    from harness.workflows.context import RunContext
    from harness.workflows.matrix import run_matrix

    plan = MatrixPlan.from_args(
        faults=args.faults, topologies=args.topologies, experiments_dir=args.experiments, preset=args.preset,
        spec_file=args.spec, retry=args.retry, tier=args.tier, target=target_from_args(args), sla=_sla(args),
    )
    table = run_matrix(plan, RunContext(args.out, platform=plan.target.platform, progress=_progress))
    print(table.markdown())
    if table.aborted:
        return EXIT_INTERRUPTED
    for cell in table.inconclusive_cells():
        print(f"harness chaos: inconclusive (not a failure): {cell}", file=sys.stderr)
    failed = table.failed_cells()
    if failed:
        raise VerdictFailed(f"{len(failed)} of {len(table.rows)} cells did not meet their tier", failed)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from harness.chaos.experiment import load_experiment

    for path in args.experiments:
        experiment = load_experiment(path)
        print(f"{path}: valid ({experiment.fault}: {experiment.extension.summary or experiment.title})")
    return 0


def _spec(args: argparse.Namespace) -> int:
    import yaml

    spec = _settings(args, args.experiment).spec()
    print(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True, exclude={"service": {"weights_dir", "fault_token"}}), sort_keys=False), end="")
    return 0
