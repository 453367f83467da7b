"""`harness sweep`: precision x max_batch_size x load (request rate or concurrency) on the local platform.

Writes ``OUT/sweep.csv`` (one row per point and window, as they complete), ``OUT/sweep_summary.json``
(medians with 95% CIs, each configuration's max rate under the p99 SLO found by search, the
latency/throughput frontier, batching and precision effects next to the forward pass's own
speed-ups, accuracy drift) and ``OUT/run.json``, all through `harness.workflows.sweep.run_sweep`.
A line per finished point with the ETA goes to stderr; the summary table to stdout. SIGINT tears the deployment down and keeps what
finished (exit 130).

``--spec FILE`` searches that spec's own deployment instead (`harness.workflows.sweep.run_spec_search`): its
max rate under the SLO by the same bounded search, speaking its target's protocol; for an LLM (openai-chat,
openai-completions) its **max goodput rate**: the highest rate at which ``--min-good-share`` of the requests
meet the token SLO (``--ttft-ms``, ``--itl-ms``, ``--tpot-ms``, ``--e2e-ms``). Writes ``OUT/max_rate.json``
and ``OUT/run.json``; the answer is the last line on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli._options import add_out, add_preset
from harness.errors import ConfigError
from harness.paths import path_type
from harness.slo import DEFAULT_P99_MS

DEFAULT_GOOD_SHARE = 0.9  # DistServe's SLO attainment: 90% of requests within every bound
GRID_FLAGS = ("precisions", "batch_sizes", "load_levels", "load_mode", "model", "max_queue_delay_ms", "search")
TOKEN_FLAGS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "min_good_share")

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
    add_preset(parser)  # smoke: a few minutes on 2 cores
    parser.add_argument("--load-mode", choices=("rate", "concurrency"),
                        help="rate: open-loop requests/s (default); concurrency: that many closed-loop clients")
    parser.add_argument("--precisions", metavar="LIST", help="comma-separated: fp32,fp16,bf16")
    parser.add_argument("--batch-sizes", metavar="LIST", help="comma-separated max_batch_size values, e.g. 1,32")
    parser.add_argument("--load-levels", metavar="LIST",
                        help="comma-separated request rates (rps), e.g. 50,200; clients with --load-mode concurrency, e.g. 1,4,16,64")
    parser.add_argument("--model", help="reference model (default ranker-mlp)")
    parser.add_argument("--p99-ms", type=float, help=f"the p99 latency SLO in ms (default {DEFAULT_P99_MS:g}, harness.slo)")
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
    group = parser.add_argument_group("a spec's own deployment (an LLM's goodput)")
    group.add_argument("--spec", type=path_type("--spec"), default=None, metavar="FILE",
                       help="search the max rate of this spec's deployment (an LLM: its max goodput rate) instead of "
                            "sweeping the reference service's configurations")
    for flag, what in (("--ttft-ms", "time to first token"), ("--itl-ms", "every inter-token gap"),
                       ("--tpot-ms", "time per output token"), ("--e2e-ms", "end-to-end latency (default: --p99-ms)")):
        group.add_argument(flag, type=float, default=None, metavar="MS", help=f"with an LLM --spec: a good request's {what}")
    group.add_argument("--min-good-share", type=float, default=None, metavar="FRACTION",
                       help=f"with an LLM --spec: the share of good requests a rate needs (default {DEFAULT_GOOD_SHARE:g})")
    add_out(parser, required=True, what="output directory (sweep.csv, sweep_summary.json, run.json)")
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
    """Run the sweep (`harness.workflows.sweep.run_sweep`); return 0 (130 when interrupted). Raises ConfigError for bad flags."""
    from harness.sweep.grid import build_plan
    from harness.sweep.table import format_sweep
    from harness.slo import Slo
    from harness.workflows.context import RunContext
    from harness.workflows.sweep import SweepSettings, run_sweep

    if args.spec is not None:
        return _run_spec_search(args)
    for name in TOKEN_FLAGS:
        if getattr(args, name) is not None:
            raise ConfigError(f"--{name.replace('_', '-')}", getattr(args, name), "token objectives judge an LLM: give "
                              "its --spec (the reference service's sweep has no tokens)")
    plan = build_plan(
        args.preset,
        precisions=parse_list("--precisions", args.precisions, str),
        batch_sizes=parse_list("--batch-sizes", args.batch_sizes, int),
        load_levels=parse_list("--load-levels", args.load_levels, float),
        model=args.model, p99_ms=args.p99_ms, window_s=args.window_s, warmup_s=args.warmup_s,
        min_windows=args.min_windows, max_windows=args.max_windows, point_budget_s=args.point_budget_s,
        max_queue_delay_ms=args.max_queue_delay_ms, search=args.search, load_mode=args.load_mode,
        search_budget_s=args.search_budget_s,
    )
    context = RunContext(args.out, slo=Slo(plan.p99_ms, plan.max_error_rate), progress=_say)  # the SLO it searches under
    outcome = run_sweep(SweepSettings(plan, accuracy=not args.no_accuracy), context)
    print(format_sweep(outcome.summary))
    _say(f"sweep {'interrupted' if outcome.interrupted else 'done'} in {outcome.elapsed_s:.0f} s: "
         f"{outcome.csv_path}, {outcome.summary_path}")
    return 130 if outcome.interrupted else 0


def _run_spec_search(args: argparse.Namespace) -> int:
    """Search the max (goodput) rate of ``--spec``'s deployment; print the answer; return 0. Raises ConfigError
    for a flag that does not fit a spec's search or a bad value, before anything is deployed."""
    from harness.config import load_spec
    from harness.load.protocols import build_adapter
    from harness.slo import Slo, TokenSlo
    from harness.sweep.grid import build_plan
    from harness.sweep.specsearch import is_generative, spec_protocol
    from harness.workflows.context import RunContext
    from harness.workflows.sweep import MAX_RATE_JSON, SpecSearchSettings, run_spec_search

    for name in GRID_FLAGS:
        if getattr(args, name) is not None:
            raise ConfigError(f"--{name.replace('_', '-')}", getattr(args, name), "a --spec search measures the spec's "
                              "deployment as written (its own configuration, one max-rate search)")
    spec = load_spec(args.spec)
    protocol = spec_protocol(spec)
    if not protocol.needs_metadata:
        build_adapter(protocol)  # a bad template or bodies file fails here, before anything is deployed
    generative = is_generative(protocol)
    if not generative:
        for name in TOKEN_FLAGS:
            if getattr(args, name) is not None:
                raise ConfigError(f"--{name.replace('_', '-')}", getattr(args, name), f"the spec's target speaks "
                                  f"{protocol.protocol}: token objectives need openai-chat or openai-completions")
    try:
        token_slo = TokenSlo(args.ttft_ms, args.tpot_ms, args.e2e_ms, args.itl_ms) if generative else None
    except ConfigError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}", exc.value, exc.reason) from None
    share = (args.min_good_share if args.min_good_share is not None else DEFAULT_GOOD_SHARE) if generative else None
    e2e_s = (args.e2e_ms or args.p99_ms or DEFAULT_P99_MS) / 1000.0
    try:
        plan = build_plan(args.preset, p99_ms=args.p99_ms, window_s=args.window_s, warmup_s=args.warmup_s,
                          min_windows=args.min_windows, max_windows=args.max_windows,
                          point_budget_s=args.point_budget_s, search=True, search_budget_s=args.search_budget_s,
                          min_good_share=share, request_timeout_s=max(5.0, 1.5 * e2e_s))  # a long answer is not cut
    except ConfigError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}", exc.value, exc.reason) from None
    context = RunContext(args.out, spec=spec, slo=Slo(plan.p99_ms, plan.max_error_rate), progress=_say)
    if generative and args.e2e_ms is None:
        _say(f"a good request also ends within --p99-ms ({plan.p99_ms:g} ms); --e2e-ms sets another bound for long answers")
    data = run_spec_search(SpecSearchSettings(plan, token_slo), context)
    _say(f"search {data['search']['stop_reason']}: {data['search']['detail']}; {context.out_dir / MAX_RATE_JSON}")
    print(_answer(data))
    return 0


def _answer(data: dict[str, Any]) -> str:
    """Return the search's answer in one line: the max (goodput) rate and what it was judged by."""
    if not data["generative"]:
        o = data["objectives"]
        return (f"max rate of {data['spec']} ({data['protocol']}): {data['max_rate_text']} under p99 <= "
                f"{o['p99_ms']:g} ms, errors <= {o['max_error_rate']:.0%}")
    o = data["objectives"]
    bounds = ", ".join(f"{k.removesuffix('_ms').upper()} <= {v:g} ms" for k, v in o.items()
                       if k.endswith("_ms") and v is not None)
    share = f", {data['good_share']:.1%} good" if data.get("good_share") is not None else ""
    sent = f" of {data['sent_rate_rps']:.1f} sent" if data.get("sent_rate_rps") else ""
    return (f"max goodput rate of {data['spec']} ({data['protocol']}): {data['max_rate_text']} (goodput "
            f"{data['goodput_rps'] or 0:.1f} good requests/s{sent}{share}) under {bounds}, >= {o['min_good_share']:.0%} good")
