"""`harness run smoke|nightly [--out DIR] [--baseline DIR] [--platform kubernetes ...]`: the main job in one command.

Preflight, deploy, a load profile, the chaos matrix, a sweep, capacity, then the report; progress on
stderr throughout (stage, elapsed, ETA from the stage budgets), a table of the stages at the end and
the path of ``report.html`` as the last line on stdout. ``smoke`` fits 15 minutes on 2 cores (a
reduced chaos matrix: it says which cells and why); ``nightly`` runs everything; ``tiny`` is the
harness's own one-minute self-test.

Exit codes: `harness.cli._exit_codes` (the end of ``harness run --help``).

``--spec FILE`` on the local platform runs the job against a team's own server (the spec's ``target``:
a command run as replicas, or an endpoint; ``--endpoint URL`` alone is an endpoint target): deploy, load
and chaos (the faults that need nothing from the server) run against it, sweep and capacity are skipped
saying why.

``--platform kubernetes`` (the in-cluster runner Job's command) attaches to the Deployment applied
from ``--spec``/``$HARNESS_SPEC``: load and the chaos matrix (experiments/kubernetes/) run against its
Service, preflight, sweep and capacity are skipped saying why, and the report is the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli._options import add_out
from harness.cli.target import add_platform_arguments, target_from_args
from harness.paths import path_type

__all__ = ["register", "run_command", "format_stages", "progress_printer"]

PRESET_CHOICES = ("smoke", "nightly", "tiny")  # harness.job.presets.JOB_PRESETS, without importing it here


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    from harness.job.presets import JOB_PRESETS, SMOKE_MATRIX_NOTE, format_budgets

    epilog = "\n".join(
        [f"{p.name}: {p.description}; budgets {format_budgets(p)}" for p in JOB_PRESETS.values()]
        + ["", SMOKE_MATRIX_NOTE])
    parser = subparsers.add_parser(
        "run",
        help="the main job: preflight, deploy, load, chaos matrix, sweep, capacity, report",
        description="Run the whole harness once: preflight, deploy, a load profile, the chaos matrix, a sweep, "
                    "capacity planning, and the report (report.html, report.md, summary.json). smoke fits 15 minutes "
                    "on 2 cores; nightly runs every fault on every topology; tiny is a one-minute self-test.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("preset", metavar="PRESET", choices=PRESET_CHOICES, help="smoke | nightly | tiny: the size of the run")
    add_out(parser, default_help="reports/<run-id>")
    parser.add_argument("--baseline", type=path_type("--baseline"), default=None, metavar="DIR",
                        help="a saved run to compare against; a regression beyond noise fails the job (exit 1)")
    parser.add_argument("--sla", type=path_type("--sla"), default=None, metavar="FILE",
                        help="SLA file (YAML) for the chaos verdicts: tiers, period_days, faults_per_day, "
                             "fault_rates_per_day, thresholds (default: harness.measure.sla's tiers, one fault a day)")
    parser.add_argument("--spec", type=path_type("--spec"), default=None, metavar="FILE",
                        help="local: your own server's spec (target.command or target.endpoint, its protocol): deploy, "
                             "load and chaos run against it, the sweep and capacity (the reference service's) are skipped "
                             "saying why; kubernetes: the applied service spec (default $HARNESS_SPEC, which the runner "
                             "Job mounts)")
    add_platform_arguments(parser)
    parser.set_defaults(func=run_command)


def progress_printer(stream=None):
    """Return a progress callable printing "harness run: LINE" to ``stream`` (default: stderr as of now).

    The stream is bound once: a stage that shows another command's output as progress swaps
    ``sys.stderr`` for a while, and progress must not write into that swap.
    """
    stream = stream if stream is not None else sys.stderr

    def say(line: str) -> None:
        print(f"harness run: {line}", file=stream, flush=True)

    return say


def format_stages(result) -> str:
    """Return the closing table: one line per stage with status, verdict, time and budget."""
    from harness.job import format_clock

    lines = [f"{'stage':<10} {'status':<10} {'verdict':<8} {'time':>7} {'budget':>7}  note"]
    for stage in result.stages:
        note = stage.reason or ""
        if stage.verdict == "fail" and stage.findings:
            note = f"{len(stage.findings)} finding(s): {stage.findings[0]}"
        lines.append(f"{stage.name:<10} {stage.status:<10} {stage.verdict or '-':<8} {format_clock(stage.elapsed_s):>7} "
                     f"{format_clock(stage.budget_s):>7}  {note[:110]}")
    lines.append(f"total {format_clock(result.elapsed_s)}; verdict {result.verdict}; exit code {result.exit_code}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    """Run the job; return its exit code. Raises ConfigError (exit 2) for bad input."""
    from harness.errors import ConfigError
    from harness.job import run_job

    target = target_from_args(args)
    if target.is_kubernetes:  # a bad applied spec is bad input (exit 2), found before any stage runs
        from harness.config import load_spec

        load_spec(target.spec_path)
    elif target.own_spec:  # a team's server (or --endpoint): the same, before any stage runs
        from harness.job.stages import own_spec

        own_spec(target)
    from harness.measure.sla_config import load_sla_config

    sla = load_sla_config(args.sla) if args.sla is not None else None  # a bad file is bad input: exit 2 before any stage
    result = run_job(args.preset, args.out, progress=progress_printer(), baseline=args.baseline, command=list(sys.argv),
                     target=target, sla=sla)
    print(format_stages(result), file=sys.stderr, flush=True)
    preflight = next((s for s in result.stages if s.name == "preflight"), None)
    if preflight is not None and preflight.stopped_job:
        print("harness run: preflight found a requirement not met; stopped before deploying:", file=sys.stderr)
        for finding in preflight.findings:
            print(f"  - {finding}", file=sys.stderr)
        print(result.out_dir / "preflight.json")
        return result.exit_code
    if result.report:
        print(Path(result.report["html"]))
    else:
        print(f"harness run: no report was written; results are in {result.out_dir}", file=sys.stderr)
    return result.exit_code
