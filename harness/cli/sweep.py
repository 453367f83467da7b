"""`harness sweep`: precision x max_batch_size x load (request rate or concurrency) on the local platform.

Writes ``OUT/sweep.csv`` (one row per point and window, as they complete), ``OUT/sweep_summary.json``
(medians with 95% CIs, each configuration's max rate under the p99 SLO found by search, the
latency/throughput frontier, batching and precision effects next to the forward pass's own
speed-ups, accuracy drift) and ``OUT/run.json``. A line per finished point with the ETA
goes to stderr; the summary table to stdout. SIGINT tears the deployment down and keeps what
finished (exit 130).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.paths import path_type, validate_output_dir

__all__ = ["register", "run_sweep_command", "parse_list"]


def register(subparsers: Any) -> None:
    """Add the `sweep` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help="performance sweep: precision x batch size x request rate or concurrency",
        description="Sweep precision x max_batch_size x load on the local platform: warm-up, repeated windows until "
        "stable, medians with 95%% CIs, each configuration's max rate under the p99 SLO by search, the frontier, the "
        "batching and precision effects next to the forward pass's own speed-ups, accuracy drift.",
    )
    parser.add_argument("--profile", default="smoke", help="smoke (a few minutes on 2 cores) | nightly (default smoke)")
    parser.add_argument("--load-mode", choices=("rate", "concurrency"),
                        help="rate: open-loop requests/s (default); concurrency: that many closed-loop clients")
    parser.add_argument("--precisions", metavar="LIST", help="comma-separated: fp32,fp16,bf16")
    parser.add_argument("--batch-sizes", metavar="LIST", help="comma-separated max_batch_size values, e.g. 1,32")
    parser.add_argument("--load-levels", metavar="LIST",
                        help="comma-separated request rates (rps), e.g. 50,200; clients with --load-mode concurrency, e.g. 1,4,16,64")
    parser.add_argument("--model", help="reference model (default ranker-mlp)")
    parser.add_argument("--p99-ms", type=float, help="the p99 latency SLO in ms (default 500)")
    parser.add_argument("--window-s", type=float, help="length of one measurement window")
    parser.add_argument("--warmup-s", type=float, help="warm-up before the first window of a point")
    parser.add_argument("--min-windows", type=int, help="windows before stability is judged")
    parser.add_argument("--max-windows", type=int, help="cap on windows per point")
    parser.add_argument("--point-budget-s", type=float, help="wall-clock bound of one point")
    parser.add_argument("--max-queue-delay-ms", type=float, help="the service's batching delay")
    parser.add_argument("--search", dest="search", action="store_true", default=None,
                        help="also search each configuration's max sustainable rate under the SLO")
    parser.add_argument("--no-search", dest="search", action="store_false")
    parser.add_argument("--search-budget-s", type=float, help="wall-clock bound of each configuration's search")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracy-drift measurement")
    parser.add_argument("--out", required=True, type=path_type("--out"), metavar="DIR", help="output directory")
    parser.set_defaults(func=run_sweep_command)


def parse_list(flag: str, text: str | None, kind: type) -> tuple | None:
    """Return the comma-separated values of a flag as a tuple of ``kind`` (None when unset); raise ConfigError."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(flag, text, "expected a comma-separated list")
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise ConfigError(flag, text, f"expected comma-separated {'integers' if kind is int else 'numbers'}") from None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep; return 0 (130 when interrupted). Raises ConfigError for bad flags."""
    from harness.results import new_run_record, save_run
    from harness.sweep.accuracy import measure_plan_accuracy
    from harness.sweep.grid import SUMMARY_JSON, SWEEP_CSV, build_plan
    from harness.sweep.local import LocalSweepBackend, split_cpus
    from harness.sweep.runner import run_sweep
    from harness.sweep.table import format_probe, format_progress, format_sweep

    validate_output_dir(args.out, "--out")
    plan = build_plan(
        args.profile,
        precisions=parse_list("--precisions", args.precisions, str),
        batch_sizes=parse_list("--batch-sizes", args.batch_sizes, int),
        load_levels=parse_list("--load-levels", args.load_levels, float),
        model=args.model, p99_ms=args.p99_ms, window_s=args.window_s, warmup_s=args.warmup_s,
        min_windows=args.min_windows, max_windows=args.max_windows, point_budget_s=args.point_budget_s,
        max_queue_delay_ms=args.max_queue_delay_ms, search=args.search, load_mode=args.load_mode,
        search_budget_s=args.search_budget_s,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    service_cpus, generator_cpus = split_cpus()
    record = new_run_record("sweep", profile=plan.profile, config=plan.to_dict(), platform="local", topology="single")
    save_run(out, record)
    _say(f"sweep {plan.profile}: {len(plan.precisions)} precision(s) x {len(plan.batch_sizes)} batch size(s) x "
         f"{len(plan.load_levels)} {plan.load_mode} level(s) of {plan.model}"
         f"{', each with a max-rate search' if plan.search else ''}; service on CPU {service_cpus}, generator on CPU "
         f"{generator_cpus or 'shared'}; writing {out / SWEEP_CSV}")

    def accuracy(p):
        if args.no_accuracy:
            return []
        _say(f"accuracy drift: {', '.join(p.precisions)} against fp32 on {p.accuracy_samples} seeded inputs, forward "
             f"pass timed at batch {', '.join(map(str, p.batch_sizes))} ...")
        drifts = measure_plan_accuracy(p, cpus=service_cpus)
        for d in drifts:
            timed = ", ".join(f"batch {b} {ms:.2f} ms" for b, ms in d.forward_ms_by_batch.items())
            _say(f"  {d.precision}: {d.status} max_abs_error {d.max_abs_error:.3g} mean_abs_error {d.mean_abs_error:.3g} "
                 f"forward {timed or 'not timed'} {d.reason} {d.forward_reason}".rstrip())
        return drifts

    def progress(done, total, point, elapsed_s, eta_s):
        _say(format_progress(done, total, point.key.label(plan.load_mode), point.status, point.windows, point.reason,
                             elapsed_s, eta_s))

    backend = LocalSweepBackend(plan, out / "deployments", service_cpus=service_cpus, generator_cpus=generator_cpus)
    try:
        outcome = run_sweep(plan, backend, out, accuracy=accuracy, progress=progress,
                            on_probe=lambda precision, batch, probe: _say(format_probe(precision, batch, probe)))
    except BaseException as exc:
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        save_run(out, record)
        raise
    record.add_artifact("sweep", SWEEP_CSV)
    record.add_artifact("summary", SUMMARY_JSON)
    record.summary = {"points": len(outcome.points), "statuses": _count(p.status for p in outcome.points),
                      "elapsed_s": round(outcome.elapsed_s, 1)}
    record.finish("aborted" if outcome.interrupted else "completed",
                  "interrupted (SIGINT)" if outcome.interrupted else None)
    save_run(out, record)
    print(format_sweep(outcome.summary))
    _say(f"sweep {'interrupted' if outcome.interrupted else 'done'} in {outcome.elapsed_s:.0f} s: "
         f"{outcome.csv_path}, {outcome.summary_path}")
    return 130 if outcome.interrupted else 0


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
