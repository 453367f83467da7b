"""`harness bench service`: the reference service's own performance, side by side with its limits
(and `harness bench stall|netfault|fuzz|loadgen|ab|compare`, registered here too).

Reports raw batched forward throughput, the service at saturation over HTTP, and a naive
(unbatched) server, with efficiency = service/raw and speedup_vs_naive = service/naive.
A table for people, ``--json`` for machines; ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli._options import add_out
from harness.config import PRECISIONS
from harness.errors import EXIT_OK, UsageError, VerdictFailed
from harness.paths import path_type

__all__ = ["register", "run_service", "format_table"]


def register(subparsers: Any) -> None:
    """Add the `bench` subcommand and its `service` benchmark."""
    parser = subparsers.add_parser("bench", help="benchmarks of the harness's own pieces", description=__doc__.splitlines()[0])
    benches = parser.add_subparsers(dest="bench", metavar="BENCH")
    service = benches.add_parser(
        "service",
        help="throughput of the reference service vs. its raw limit and a naive server",
        description="Measure the raw batched forward loop, the batching service at saturation, and a naive server.",
    )
    from harness.bench.servicebench import BenchSettings  # standard library only: cheap to import here

    defaults = BenchSettings()
    add = service.add_argument
    add("--json", action="store_true", help="print one JSON object instead of a table")
    add("--model", default=defaults.model, help=f"reference model (default {defaults.model})")
    add("--precision", choices=PRECISIONS, default=defaults.precision, help=f"default {defaults.precision}")
    add("--max-batch-size", type=int, default=defaults.max_batch_size, help=f"default {defaults.max_batch_size}")
    add("--max-queue-delay-ms", type=float, default=defaults.max_queue_delay_ms, help=f"default {defaults.max_queue_delay_ms:g}")
    add("--duration-s", type=float, default=defaults.duration_s,
        help=f"measured seconds per variant, split over the rounds (default {defaults.duration_s:g})")
    add("--rounds", type=int, default=defaults.rounds, help=f"interleaved raw/service/naive rounds (default {defaults.rounds})")
    add("--warmup-s", type=float, default=defaults.warmup_s, help=f"load warm-up before each service window (default {defaults.warmup_s:g})")
    add("--concurrency", type=int, default=None, help="closed-loop clients (default 2 x max batch size)")
    add("--weights-dir", type=path_type("--weights-dir"), default=None, help="weights cache (default as the service's)")
    add("--check", action="store_true", help="exit 1 if efficiency < 0.80 or speedup_vs_naive < 2.0")
    service.set_defaults(func=run_service)
    _register_stall(benches)
    _register_netfault(benches)
    _register_fuzz(benches)
    _register_loadgen(benches)
    from harness.cli._bench_compare import add_parsers  # `bench ab` and `bench compare`

    add_parsers(benches)
    parser.set_defaults(func=lambda args: _missing_bench(parser))


def _register_stall(benches: Any) -> None:
    from harness.bench.stall import StallSettings

    defaults = StallSettings()
    stall = benches.add_parser(
        "stall",
        help="freeze a replica for known times (SIGSTOP/SIGCONT): is the unavailability figure the stall?",
        description="Freeze one replica of the reference service for stalls of known length under load, with probes "
                    "that neither restart nor un-route it, and measure each stall's unavailability (the longest time "
                    "without a successful answer) against the frozen time. Exit 1 if any misses the tolerance.",
    )
    add = stall.add_argument
    add("--stalls-s", default=",".join(f"{d:g}" for d in defaults.stalls_s),
        help=f"stall lengths in seconds, comma-separated (default {','.join(f'{d:g}' for d in defaults.stalls_s)})")
    add("--repeats", type=int, default=defaults.repeats, help=f"times each stall is repeated (default {defaults.repeats})")
    add("--model", default=defaults.model, help=f"reference model (default {defaults.model})")
    add("--rate-rps", type=float, default=defaults.rate_rps,
        help=f"open-loop load beside the prober, requests/s; 0 for none (default {defaults.rate_rps:g})")
    add("--tolerance-ms", type=float, default=defaults.tolerance_ms, help=f"allowed error (default {defaults.tolerance_ms:g})")
    add_out(stall, default=_stall_out, default_help="reports/bench-stall-<time>")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    stall.set_defaults(func=run_stall)


def _stall_out() -> str:
    # the default --out of `bench stall`, named when the command runs
    import time

    return time.strftime("reports/bench-stall-%Y%m%dT%H%M%SZ", time.gmtime())


def run_stall(args: argparse.Namespace) -> int:
    """Run the stall benchmark; return 0, or raise VerdictFailed when a stall misses the tolerance."""
    from harness.bench.stall import StallSettings, format_stall_table, run_stall_bench
    from harness.errors import ConfigError
    from harness.modelnames import MODEL_NAMES

    try:
        stalls = tuple(float(part) for part in str(args.stalls_s).split(",") if part.strip())
    except ValueError:
        raise ConfigError("--stalls-s", args.stalls_s, "expected seconds separated by commas, e.g. 1,3,5") from None
    if args.model not in MODEL_NAMES:
        raise ConfigError("--model", args.model, f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    settings = StallSettings(stalls_s=stalls, repeats=args.repeats, model=args.model, rate_rps=args.rate_rps,
                             tolerance_ms=args.tolerance_ms).validate()
    out = args.out  # absolute and checked (harness.cli._options)
    result = run_stall_bench(settings, out, progress=lambda message: print(f"bench stall: {message}", file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else format_stall_table(result))
    print(f"bench stall: results in {out}", file=sys.stderr)
    if not result["all_within_tolerance"]:
        missed = [f"{row['stall_s']:g} s stall: unavailability {row['unavailability_s']:.3f} s, error {row['error_ms']:+.1f} ms"
                  for row in result["stalls"] if not row["within_tolerance"]]
        raise VerdictFailed(f"{len(missed)} stall(s) measured outside +-{settings.tolerance_ms:g} ms", missed)
    return EXIT_OK


def _register_netfault(benches: Any) -> None:
    from harness.bench.netfault import NetfaultSettings

    defaults = NetfaultSettings()
    netfault = benches.add_parser(
        "netfault",
        help="the balancer's network faults measured at the client: +N ms latency moves p50 by N? P%% aborts fail P%%?",
        description="One replica of the reference service behind the balancer, one open-loop load, and side by side "
                    "in that run: baseline and added-latency windows in ABBA pairs, one with a share of requests "
                    "aborted, one with a share of connections reset. Prints each window's figures and checks the "
                    "latency's p50 shift and the aborted share against their claims. Exit 1 if either misses.",
    )
    add = netfault.add_argument
    add("--model", default=defaults.model, help=f"reference model (default {defaults.model})")
    add("--rate-rps", type=float, default=defaults.rate_rps,
        help=f"open-loop requests/s of the abort and reset windows (default {defaults.rate_rps:g})")
    add("--latency-rate-rps", type=float, default=defaults.latency_rate_rps,
        help=f"open-loop requests/s of the baseline and latency windows, below the service's knee "
             f"(default {defaults.latency_rate_rps:g})")
    add("--latency-ms", type=float, default=defaults.latency_ms, help=f"added latency (default {defaults.latency_ms:g})")
    add("--latency-window-s", type=float, default=defaults.latency_window_s,
        help=f"length of each baseline and latency window (default {defaults.latency_window_s:g})")
    add("--latency-pairs", type=int, default=defaults.latency_pairs,
        help=f"baseline/latency window pairs, in ABBA order (default {defaults.latency_pairs})")
    add("--abort-percent", type=float, default=defaults.abort_percent, help=f"share aborted (default {defaults.abort_percent:g})")
    add("--abort-requests", type=int, default=defaults.abort_requests,
        help=f"requests in the abort window (default {defaults.abort_requests})")
    add("--reset-requests", type=int, default=defaults.reset_requests,
        help=f"requests in the reset window, 0 for none (default {defaults.reset_requests})")
    add("--seed", type=int, default=defaults.seed, help=f"seed of the faults' draws (default {defaults.seed})")
    add_out(netfault, default=_netfault_out, default_help="reports/bench-netfault-<time>")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    netfault.set_defaults(func=run_netfault)


def _netfault_out() -> str:
    import time

    return time.strftime("reports/bench-netfault-%Y%m%dT%H%M%SZ", time.gmtime())


def run_netfault(args: argparse.Namespace) -> int:
    """Run the network-fault benchmark; return 0, or raise VerdictFailed when a figure misses its claim."""
    from harness.bench.netfault import NetfaultSettings, format_netfault_table, run_netfault_bench
    from harness.cli._display import ProgressDisplay
    from harness.errors import ConfigError
    from harness.modelnames import MODEL_NAMES

    if args.model not in MODEL_NAMES:
        raise ConfigError("--model", args.model, f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    settings = NetfaultSettings(model=args.model, rate_rps=args.rate_rps, latency_rate_rps=args.latency_rate_rps,
                                latency_ms=args.latency_ms,
                                latency_window_s=args.latency_window_s, latency_pairs=args.latency_pairs,
                                abort_percent=args.abort_percent,
                                abort_requests=args.abort_requests, reset_requests=args.reset_requests,
                                seed=args.seed).validate()
    result = run_netfault_bench(settings, args.out, progress=ProgressDisplay("harness bench netfault"))
    print(json.dumps(result, indent=2) if args.json else format_netfault_table(result))
    print(f"bench netfault: results in {args.out}", file=sys.stderr)
    if not result["all_within_tolerance"]:
        missed = [f"{name}: {check}" for name, check in result["checks"].items() if not check["within_tolerance"]]
        raise VerdictFailed("a network fault's measured effect missed its claim", missed)
    return EXIT_OK


def _register_fuzz(benches: Any) -> None:
    from harness.bench.fuzz import FuzzSettings

    fuzz = benches.add_parser(
        "fuzz",
        help="hostile and malformed requests to a replica, directly and through the balancer: any 5xx?",
        description="Send a seeded corpus of valid, malformed, mistyped, oversized and lying binary-tensor requests to "
                    "one replica of each model, directly and through the local platform's balancer, and check: no "
                    "5xx, a JSON error for every 4xx, the same status both ways, the replica still ready, the "
                    "balancer's memory flat.",
    )
    add = fuzz.add_argument
    add("--models", default=",".join(FuzzSettings.models), help=f"comma-separated models (default {','.join(FuzzSettings.models)})")
    add("--requests-per-model", type=int, default=FuzzSettings.requests_per_model,
        help=f"corpus size per model; each request is sent both ways (default {FuzzSettings.requests_per_model})")
    add("--seed", type=int, default=0, help="corpus seed (default 0)")
    add("--concurrency", type=int, default=FuzzSettings.concurrency, help=f"concurrent clients (default {FuzzSettings.concurrency})")
    add_out(fuzz, default="reports/bench-fuzz")
    fuzz.set_defaults(func=run_fuzz)


def run_fuzz(args: argparse.Namespace) -> int:
    """Run the fuzz benchmark and print its table; return 0, or raise VerdictFailed when a check failed."""
    from harness.bench.fuzz import FuzzSettings, format_fuzz_table, run_fuzz_bench
    from harness.errors import ConfigError
    from harness.modelnames import MODEL_NAMES

    models = tuple(m.strip() for m in str(args.models).split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_NAMES]
    if not models or unknown:
        raise ConfigError("--models", args.models, f"choose from {', '.join(MODEL_NAMES)}")
    for flag, value in (("--requests-per-model", args.requests_per_model), ("--concurrency", args.concurrency)):
        if value < 1:
            raise ConfigError(flag, value, "must be at least 1")
    out = args.out  # absolute and checked (harness.cli._options)
    settings = FuzzSettings(models, args.requests_per_model, args.seed, args.concurrency)
    result = run_fuzz_bench(settings, out, progress=lambda message: print(f"bench fuzz: {message}", file=sys.stderr, flush=True))
    print(format_fuzz_table(result))
    if not result["passed"]:
        raise VerdictFailed("the fuzz benchmark found a 5xx, a 4xx without a JSON error, a status mismatch or a replica "
                            "no longer ready", [])
    return EXIT_OK


def _register_loadgen(benches: Any) -> None:
    from harness.bench.loadgen import LoadgenSettings

    defaults = LoadgenSettings()
    loadgen = benches.add_parser(
        "loadgen",
        help="the load generator from N processes against one: how much more load does it send?",
        description="Drive a trivial endpoint with the open-loop rate generator from 1 process and from N, side by "
                    "side in one run, and find the highest rate each keeps up with (schedule kept, nothing "
                    "overflowed or failed); or (--generator locust) with one Locust process and Locust's master "
                    "with N workers, alternately, each run's answered requests per second after a warm-up. Prints "
                    "both and their ratio. Exit 1 if the ratio is below --min-ratio.",
    )
    add = loadgen.add_argument
    add("--generator", choices=("rate", "locust"), default="rate",
        help="rate: the open-loop generator (default); locust: Locust's distributed mode, closed loop")
    add("--users", type=int, default=64, help="locust: users, no think time (default 64)")
    add("--rounds", type=int, default=2, help="locust: runs of each count, alternating (default 2)")
    add("--workers", type=int, default=defaults.workers, help="N (default 0: one per usable CPU, at least 2)")
    add("--start-rps", type=float, default=defaults.start_rps, help=f"first rate probed (default {defaults.start_rps:g})")
    add("--growth", type=float, default=defaults.growth, help=f"rate factor per step (default {defaults.growth:g})")
    add("--refine", type=int, default=defaults.refine, help=f"bisections of each bracket (default {defaults.refine})")
    add("--max-rps", type=float, default=defaults.max_rps, help=f"highest rate probed (default {defaults.max_rps:g})")
    add("--probe-s", type=float, default=None,
        help=f"seconds of load per probe that are judged (default {defaults.probe_s:g}; locust 4)")
    add("--warmup-s", type=float, default=None,
        help=f"seconds of load before them, not judged (default {defaults.warmup_s:g}; locust 2)")
    add("--seed", type=int, default=defaults.seed, help=f"seed of the Poisson arrivals (default {defaults.seed})")
    add("--min-ratio", type=float, default=defaults.min_ratio,
        help=f"the claim: N processes keep up with at least this many times one's rate (default {defaults.min_ratio:g})")
    add_out(loadgen, default=_loadgen_out, default_help="reports/bench-loadgen-<time>")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    loadgen.set_defaults(func=run_loadgen)


def _loadgen_out() -> str:
    import time

    return time.strftime("reports/bench-loadgen-%Y%m%dT%H%M%SZ", time.gmtime())


def run_loadgen(args: argparse.Namespace) -> int:
    """Run the load-generator benchmark; return 0, or raise VerdictFailed when the ratio misses the claim."""
    from harness.bench.loadgen import LoadgenSettings, format_loadgen_table, run_loadgen_bench
    from harness.bench.loadgen_locust import LocustBenchSettings, format_locust_table, run_locust_bench
    from harness.cli._display import ProgressDisplay

    timing = {k: getattr(args, k) for k in ("probe_s", "warmup_s") if getattr(args, k) is not None}
    if args.generator == "locust":
        settings = LocustBenchSettings(workers=args.workers, users=args.users, rounds=args.rounds,
                                       min_ratio=args.min_ratio, **timing).validate()
        result = run_locust_bench(settings, args.out, progress=ProgressDisplay("harness bench loadgen"))
    else:
        settings = LoadgenSettings(workers=args.workers, start_rps=args.start_rps, growth=args.growth,
                                   refine=args.refine, max_rps=args.max_rps, seed=args.seed, min_ratio=args.min_ratio,
                                   **timing).validate()
        result = run_loadgen_bench(settings, args.out, progress=ProgressDisplay("harness bench loadgen"))
    table = format_locust_table if args.generator == "locust" else format_loadgen_table
    print(json.dumps(result, indent=2) if args.json else table(result))
    print(f"bench loadgen: results in {args.out}", file=sys.stderr)
    if not result["meets_claim"]:
        raise VerdictFailed(f"{result['workers']} processes sent {result['ratio'] or 0:.2f}x one process's rate, "
                            f"below {settings.min_ratio:g}x", [f"{count} process(es): {figure['text']} req/s"
                                                              for count, figure in result["figures"].items()])
    return EXIT_OK


def _missing_bench(parser: argparse.ArgumentParser) -> int:
    raise UsageError(f"choose a benchmark: {parser.prog} service|stall|netfault|fuzz|loadgen|ab|compare")


def _validate(args: argparse.Namespace) -> None:
    from harness.errors import ConfigError
    from harness.modelnames import MODEL_NAMES

    if args.model not in MODEL_NAMES:
        raise ConfigError("model", args.model, f"unknown model; choose one of {', '.join(MODEL_NAMES)}")
    for name in ("max_batch_size", "duration_s", "rounds"):
        if getattr(args, name) <= 0:
            raise ConfigError(name, getattr(args, name), "must be greater than zero")
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError("concurrency", args.concurrency, "must be at least 1")
    if args.warmup_s < 0 or args.max_queue_delay_ms < 0:
        raise ConfigError("warmup_s" if args.warmup_s < 0 else "max_queue_delay_ms", min(args.warmup_s, args.max_queue_delay_ms), "must not be negative")


def format_table(result: dict[str, Any]) -> str:
    """Return the human-readable table of a service benchmark result."""
    rows = [
        ("raw batched forward", f"{result['raw_samples_per_s']:.1f} samples/s", f"forward p50 {result['raw_forward_p50_ms']:.1f} ms"),
        ("service (batching)", f"{result['service_samples_per_s']:.1f} samples/s", f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, mean batch {result['mean_batch_size']}"),
        ("naive (batch 1)", f"{result['naive_samples_per_s']:.1f} samples/s", f"p50 {result['naive_p50_ms']:.1f} ms, p99 {result['naive_p99_ms']:.1f} ms"),
    ]
    lines = [
        f"model {result['model']} {result['precision']} on {result['device']}, max_batch_size {result['max_batch_size']}, "
        f"concurrency {result['concurrency']}, {result['torch_threads']} torch thread(s)",
        f"server core(s) {result['server_cores']}, client core(s) {result['client_cores']}"
        + (" (shared: one core only)" if result["cores_shared"] else ""),
        "",
    ]
    lines += [f"  {name:<22} {rate:>20}   {detail}" for name, rate, detail in rows]
    ok = lambda passed: "ok" if passed else "MISSED"  # noqa: E731
    lines += [
        "",
        f"  efficiency (service/raw)      {result['efficiency']:.3f}   target >= 0.80  {ok(result['efficiency'] >= 0.80)}",
        f"  speedup vs naive              {result['speedup_vs_naive']:.2f}x   target >= 2.0   {ok(result['speedup_vs_naive'] >= 2.0)}",
        f"  efficiency per CPU-second     {result['efficiency_cpu']:.3f}   (service vs raw, each per CPU-second it was granted)",
        f"  per round: efficiency {result['rounds_efficiency']}, speedup {result['rounds_speedup_vs_naive']}",
        f"  errors: service {result['service_errors']}, naive {result['naive_errors']}; CPU: raw {result['raw_cpu_percent']}%, "
        f"server {result['server_cpu_percent']}%, client {result['client_cpu_percent']}%; load average {result['load_average_1m']}; "
        f"{result['elapsed_s']} s",
    ]
    return "\n".join(lines)


def run_service(args: argparse.Namespace) -> int:
    """Run the service benchmark and print the result; return 0 (1 with --check and a missed target)."""
    _validate(args)
    from harness.bench.servicebench import BenchSettings, run_service_bench

    settings = BenchSettings(
        model=args.model,
        precision=args.precision,
        max_batch_size=args.max_batch_size,
        concurrency=args.concurrency,
        duration_s=args.duration_s,
        rounds=args.rounds,
        warmup_s=args.warmup_s,
        max_queue_delay_ms=args.max_queue_delay_ms,
        weights_dir=str(args.weights_dir) if args.weights_dir is not None else None,
    )
    result = run_service_bench(settings, progress=lambda message: print(f"bench: {message}", file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    if args.check and not result["meets_targets"]:
        raise VerdictFailed("service benchmark missed its targets", [f"efficiency={result['efficiency']}", f"speedup_vs_naive={result['speedup_vs_naive']}"])
    return EXIT_OK
