"""`harness capacity`: replicas needed for a target rate at a p99 SLO, from a measured per-replica rate.

Measures one replica's max sustainable rate under the SLO (search over the request rate, through
the front balancer as production traffic goes), plans ``ceil(R x (1 + headroom) / per-replica rate)``
replicas, then checks the linear-scaling assumption by deploying the planned count (multi-active)
where the machine allows it, else the most it allows, and measuring that deployment the same way.
Prints the plan and the check; writes ``OUT/capacity.json`` and ``OUT/run.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness.config import PRECISIONS
from harness.errors import ConfigError
from harness.paths import path_type, validate_output_dir

__all__ = ["register", "run_capacity_command", "CAPACITY_JSON"]

CAPACITY_JSON = "capacity.json"


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
    parser.add_argument("--out", required=True, type=path_type("--out"), metavar="DIR", help="output directory")
    parser.set_defaults(func=run_capacity_command)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_capacity_command(args: argparse.Namespace) -> int:
    """Plan and check; return 0. Raises ConfigError for bad flags, HarnessError when nothing meets the SLO."""
    from harness.results import new_run_record, save_run, write_json
    from harness.sweep.capacity import check_linear_scaling, validate_capacity_inputs
    from harness.sweep.grid import build_plan
    from harness.sweep.local import LocalSweepBackend, split_cpus
    from harness.sweep.runner import search_session
    from harness.sweep.table import format_capacity

    validate_output_dir(args.out, "--out")
    cores = sorted(os.sched_getaffinity(0))
    validate_capacity_inputs(args.target_rps, args.p99_ms, args.headroom, args.max_replicas)
    if args.precision not in PRECISIONS:
        raise ConfigError("--precision", args.precision, f"choose from {', '.join(PRECISIONS)}")
    if not args.search_budget_s > 0:
        raise ConfigError("--search-budget-s", args.search_budget_s, "must be greater than zero")
    allowed = min(args.max_replicas or len(cores), len(cores))
    plan = build_plan(
        "smoke", model=args.model, precisions=(args.precision,), batch_sizes=(args.batch_size,), p99_ms=args.p99_ms,
        window_s=args.window_s, warmup_s=args.warmup_s, max_queue_delay_ms=args.max_queue_delay_ms,
        search_budget_s=args.search_budget_s, point_budget_s=max(30.0, args.warmup_s + 4 * args.window_s + 10.0),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = new_run_record("capacity", config={**plan.to_dict(), "target_rps": args.target_rps,
                                                "headroom": args.headroom, "allowed_replicas": allowed},
                            platform="local", topology="multi-active")
    save_run(out, record)
    service_cpus, generator_cpus = split_cpus(cores)

    measured: dict[int, float] = {}

    def measure_replicas(count: int):
        # one replica gets the service cores; more replicas than those share every core (said in the note)
        cpus = service_cpus if count <= len(service_cpus) else cores
        backend = LocalSweepBackend(plan, out / "deployments", replicas=count, service_cpus=cpus,
                                    generator_cpus=generator_cpus, direct=False)
        _say(f"replicas={count}: deploying {args.precision} batch={args.batch_size} on CPU {cpus}, "
             f"generator on CPU {generator_cpus or 'shared'} ...")
        with backend.open(args.precision, args.batch_size, ready_timeout_s=plan.ready_timeout_s) as session:
            pre = session.precheck(timeout_s=30.0)
            # start below the expected answer: half the pre-check's estimate, or 60 % of the linear prediction
            start = max(1.0, 0.6 * count * measured[1] if measured.get(1) else 0.5 * pre.capacity_rps * count)
            _say(f"replicas={count}: pre-check {pre.detail}; searching from {start:.0f} rps")
            result = search_session(
                session, plan, start_rps=start, budget_s=plan.search_budget_s,
                on_probe=lambda p: _say(f"  replicas={count} probe {p.rate_rps:.1f} rps: {p.verdict} ({p.reason})"),
            )
            measured[count] = result.max_rate_rps
            return result

    try:
        check = check_linear_scaling(measure_replicas, target_rps=args.target_rps, p99_ms=args.p99_ms,
                                     headroom=args.headroom, allowed_replicas=allowed,
                                     on_point=lambda p: _say(f"replicas={p.replicas}: max sustainable {p.measured_rps:.1f} rps "
                                                             f"(predicted {p.predicted_rps:.1f}, ratio {p.ratio:.2f})"))
    except BaseException as exc:
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        save_run(out, record)
        raise
    data = check.to_dict()
    shared = len(cores) < 2 or any(p.replicas > len(service_cpus) for p in check.points)
    if shared:
        data["note"] = "; ".join(filter(None, [data["note"], (
            f"with {max(p.replicas for p in check.points)} replicas on {len(cores)} cores the replicas share cores with "
            "the load generator and the front balancer, so the check includes that contention")]))
    data["config"] = {"model": plan.model, "precision": args.precision, "max_batch_size": args.batch_size,
                      "max_queue_delay_ms": plan.max_queue_delay_ms, "cores": cores, "generator_cpus": generator_cpus}
    write_json(out / CAPACITY_JSON, data)
    record.add_artifact("capacity", CAPACITY_JSON)
    record.summary = {"replicas": check.plan.replicas, "per_replica_rps": check.plan.per_replica_rps,
                      "worst_ratio": data["worst_ratio"]}
    record.finish("completed")
    save_run(out, record)
    print(format_capacity(data))
    return 0
