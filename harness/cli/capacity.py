"""`harness capacity`: replicas needed for a target rate at a p99 SLO, from a measured per-replica rate.

Measures one replica's max sustainable rate under the SLO (search over the request rate, by the same
code and in the same way as `harness sweep` measures a configuration), plans
``ceil(R x (1 + headroom) / per-replica rate)`` replicas, then checks the linear-scaling assumption
by deploying the planned count (multi-active, through the front balancer) where the machine allows
it, else the most it allows, and measuring that deployment the same way. All of it, the run record
included, is `harness.workflows.capacity.run_capacity`; this command parses flags and prints the
plan and the check. Writes ``OUT/capacity.json`` and ``OUT/run.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli._options import add_out
from harness.config import PRECISIONS
from harness.errors import ConfigError
from harness.sweep.planner import CAPACITY_JSON

__all__ = ["register", "run_capacity_command", "CAPACITY_JSON"]


def register(subparsers: Any) -> None:
    """Add the `capacity` subcommand."""
    parser = subparsers.add_parser(
        "capacity",
        help="replicas needed for a target rate at a p99 SLO, with a measured check",
        description="Measure one replica's max sustainable rate under the p99 SLO, plan ceil(R x (1 + headroom) / "
        "per-replica rate) replicas, and check the linear-scaling assumption on this machine.",
    )
    parser.add_argument("--target-rps", type=float, required=True, help="the peak request rate to serve")
    parser.add_argument("--p99-ms", type=float, required=True, help="the p99 latency SLO in ms")
    parser.add_argument("--headroom", type=float, default=0.3, help="spare fraction on top of the target (default 0.3)")
    parser.add_argument("--max-replicas", type=int, help="most replicas the check may deploy (default: this machine's cores)")
    parser.add_argument("--model", default=None, help="reference model (default ranker-mlp)")
    parser.add_argument("--precision", default="fp32", help=f"{' | '.join(PRECISIONS)} (default fp32)")
    parser.add_argument("--batch-size", type=int, default=32, help="the service's max_batch_size (default 32)")
    parser.add_argument("--max-queue-delay-ms", type=float, default=None, help="the service's batching delay")
    parser.add_argument("--window-s", type=float, default=3.0, help="measurement window of each search probe")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="warm-up before each search probe's windows")
    parser.add_argument("--search-budget-s", type=float, default=240.0, help="wall-clock bound of each search")
    add_out(parser, required=True, what="output directory (capacity.json, run.json)")
    parser.set_defaults(func=run_capacity_command)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_capacity_command(args: argparse.Namespace) -> int:
    """Plan and check; return 0. Raises ConfigError for bad flags, HarnessError when nothing meets the SLO."""
    from harness.sweep.planner import CapacitySettings, validate_capacity_settings
    from harness.sweep.table import format_capacity
    from harness.slo import Slo
    from harness.workflows.capacity import run_capacity
    from harness.workflows.context import RunContext

    settings = CapacitySettings(
        target_rps=args.target_rps, p99_ms=args.p99_ms, headroom=args.headroom, max_replicas=args.max_replicas,
        model=args.model, precision=args.precision, batch_size=args.batch_size,
        max_queue_delay_ms=args.max_queue_delay_ms, window_s=args.window_s, warmup_s=args.warmup_s,
        search_budget_s=args.search_budget_s,
    )
    try:
        validate_capacity_settings(settings)
    except ConfigError as exc:
        if exc.field in ("precision", "search_budget_s"):  # name the flag the user typed
            raise ConfigError(f"--{exc.field.replace('_', '-')}", exc.value, exc.reason) from None
        raise
    context = RunContext(args.out, slo=Slo(p99_ms=settings.p99_ms), progress=_say)  # the SLO it plans under
    data = run_capacity(settings, context)
    print(format_capacity(data))
    return 0
