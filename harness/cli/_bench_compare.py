"""`harness bench ab` and `harness bench compare`: interleaved A/B sign-off, and compare's own error rates.

Registered by `harness.cli.bench` under ``harness bench`` (this module has no top-level command).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli._options import add_out
from harness.errors import EXIT_OK, ConfigError, VerdictFailed
from harness.paths import path_type

__all__ = ["add_parsers"]

SIGNOFF_SHAPE = """\
The sign-off load shape: open-loop requests (evenly spaced; latency from the intended send time) at a
rate far below the knee, each carrying one full batch of samples, against a spec with a small
max_queue_delay_ms. Every request is then alone in the service and its latency is the build's forward
pass plus fixed overhead, so a slower build shows in proportion. Closed-loop users against the
default 50 ms batching window measure the window instead (p50 flips between ~100 and ~200 ms)."""

AB_DESCRIPTION = f"""\
Measure two builds in interleaved rounds, A B, B A, A B, ... (ABBA: slow drift of the machine cancels
within each pair, and neither build is always second). By default each build is deployed once and
each pair is one open-loop run whose requests alternate between A and B (--deploy requests: the
machine's drift of 10-20% over tens of seconds and its bursts hit both builds alike); --deploy
session alternates short rounds between the two deployments; --deploy round gives every round a
fresh deployment (deploy, ready, warm-up, measure, tear down). Writes OUT/a and OUT/b as load runs with rounds (each round records its
pair), compares b against a PAIRED (t-test on per-pair log-ratios, Holm over p50/p99; see
harness.measure.regression), writes OUT/comparison.json and exits 1 on a regression.

{SIGNOFF_SHAPE}

Without --spec-a/--spec-b the default spec is used with the sign-off settings (max_queue_delay_ms 2,
one torch thread); a spec you give is used as it is.

Example (a build 10% slower in every forward pass):
  harness bench ab --fault-b slow-inference --fault-param-b factor=1.1 --rounds 10 --out reports/ab
"""

COMPARE_DESCRIPTION = f"""\
How often harness compare flags identical builds (false alarms) and how often it catches a build
whose every forward pass is FACTOR x slower (slow-inference factor on every replica). Each comparison
is a fresh interleaved A/B session (harness bench ab) with its own deployments; sessions alternate
A/A and A/B. Prints both rates with Wilson 95% intervals, the median end-to-end p50 change the factor
produced, the settings and the machine; writes OUT/compare_bench.json.

{SIGNOFF_SHAPE}

The defaults (20 + 20 sessions, each deploying both builds once and measuring 10 pairs, each a 4 s
open-loop run of text-encoder at 8 req/s x 32 samples alternating A and B) take about 30 minutes on
2 cores. text-encoder
because its request is 6 KiB of token ids: the forward pass is nearly all of a request's time, so a
slower forward shows in proportion. A busy machine takes longer, and its bursts of other work are
what the rates then measure.
"""


def add_parsers(benches: Any) -> None:
    """Add ``ab`` and ``compare`` to the ``harness bench`` subparsers."""
    from harness.bench.ab import SIGNOFF_RATE_RPS, SIGNOFF_REQUEST_ROWS
    from harness.bench.comparebench import CompareBenchSettings

    raw = argparse.RawDescriptionHelpFormatter
    ab = benches.add_parser("ab", help="interleaved A/B sign-off of two builds, compared paired (exit 1 on a regression)",
                            description=AB_DESCRIPTION, formatter_class=raw)
    add = ab.add_argument
    add("--spec-a", type=path_type("--spec-a"), default=None, metavar="FILE", help="build A's service spec (the baseline)")
    add("--spec-b", type=path_type("--spec-b"), default=None, metavar="FILE", help="build B's service spec (the candidate)")
    add("--fault-b", default=None, metavar="KIND", help="a service fault injected into every replica of B (e.g. slow-inference)")
    add("--fault-param-b", action="append", default=[], metavar="KEY=VALUE",
        help="a parameter of --fault-b (repeatable), e.g. factor=1.1")
    add("--rounds", type=int, default=10, metavar="N", help="rounds per build, measured as N A/B pairs (default 10; at least 3)")
    add("--rate-rps", type=float, default=SIGNOFF_RATE_RPS, metavar="R", help=f"open-loop request rate (default {SIGNOFF_RATE_RPS:g})")
    add("--request-rows", type=int, default=SIGNOFF_REQUEST_ROWS, metavar="N",
        help=f"samples per request (default {SIGNOFF_REQUEST_ROWS}: one full batch)")
    add("--duration-s", type=float, default=5.0, metavar="S", help="measured seconds per round (default 5)")
    add("--warmup-s", type=float, default=1.0, metavar="S", help="unmeasured load before each round (default 1)")
    add("--platform", default="local", help="platform to deploy on (default: local)")
    add("--deploy", choices=("requests", "session", "round"), default="requests",
        help="requests (default): each build deployed once, and each pair is one open-loop run whose requests "
             "alternate between A and B (a burst on the machine hits both alike); session: short rounds alternate "
             "between the two deployments; round: a fresh deployment for every round (samples the deployment's own "
             "variation too, at ~4 s a round)")
    add_out(ab, required=True, what="output directory (a/, b/, comparison.json)")
    add("--alpha", type=float, default=0.01, help="family-wise false-alarm level (default 0.01)")
    add("--min-change", type=float, default=0.05, help="smallest median change that counts (default 0.05)")
    add("--json", action="store_true", help="print the comparison as JSON")
    ab.set_defaults(func=run_ab_command)

    defaults = CompareBenchSettings()
    compare = benches.add_parser("compare", help="false-alarm and detection rates of harness compare on fresh A/A and A/B sessions",
                                 description=COMPARE_DESCRIPTION, formatter_class=raw)
    add = compare.add_argument
    add("--same", type=int, default=defaults.same_sessions, metavar="N", help=f"A/A sessions (default {defaults.same_sessions})")
    add("--slow", type=int, default=defaults.slow_sessions, metavar="N", help=f"A/B sessions (default {defaults.slow_sessions})")
    add("--factor", type=float, default=defaults.factor, help=f"slow-inference factor of B (default {defaults.factor:g})")
    add("--pairs", type=int, default=defaults.pairs, metavar="N", help=f"ABBA pairs per session (default {defaults.pairs})")
    add("--duration-s", type=float, default=defaults.duration_s, metavar="S", help=f"measured seconds per round (default {defaults.duration_s:g})")
    add("--warmup-s", type=float, default=defaults.warmup_s, metavar="S", help=f"warm-up per round (default {defaults.warmup_s:g})")
    add("--rate-rps", type=float, default=defaults.rate_rps, metavar="R", help=f"open-loop rate (default {defaults.rate_rps:g})")
    add("--request-rows", type=int, default=defaults.request_rows, metavar="N", help=f"samples per request (default {defaults.request_rows})")
    add("--model", default=defaults.model, help=f"reference model (default {defaults.model})")
    add("--deploy", choices=("requests", "session", "round"), default=defaults.deploy,
        help=f"deployment per session or per round (default {defaults.deploy}; see harness bench ab --help)")
    add_out(compare, required=True, what="output directory (compare_bench.json, one folder per session)")
    add("--json", action="store_true", help="print the result as JSON")
    add("--check", action="store_true", help="exit 1 if the false-alarm rate is over 5%% or the detection rate under 95%%")
    compare.set_defaults(func=run_compare_command)


def _say(message: str) -> None:
    print(f"harness bench: {message}", file=sys.stderr, flush=True)


def run_ab_command(args: argparse.Namespace) -> int:
    """Run the interleaved A/B session and print the paired comparison; exit 1 on a regression."""
    from harness.bench.ab import run_ab, signoff_load, signoff_spec
    from harness.cli._display import ProgressDisplay
    from harness.cli.compare import format_comparison
    from harness.config import load_spec
    from harness.load.rounds import Arm, parse_fault_params
    from harness.measure.regression import MIN_ROUNDS, Rules

    if args.rounds < MIN_ROUNDS:
        raise ConfigError("--rounds", args.rounds, f"at least {MIN_ROUNDS}: fewer pairs are always inconclusive")
    for flag in ("rate_rps", "duration_s"):
        if not getattr(args, flag) > 0:
            raise ConfigError("--" + flag.replace("_", "-"), getattr(args, flag), "must be greater than zero")
    if args.request_rows < 1:
        raise ConfigError("--request-rows", args.request_rows, "must be at least 1")
    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", args.alpha, "must be between 0 and 1")
    if args.min_change < 0:
        raise ConfigError("--min-change", args.min_change, "must be >= 0")
    spec_a = load_spec(args.spec_a) if args.spec_a else signoff_spec(load_spec(None))
    spec_b = load_spec(args.spec_b) if args.spec_b else signoff_spec(load_spec(None))
    if spec_a.service.model != spec_b.service.model:
        raise ConfigError("--spec-b", str(args.spec_b), f"model {spec_b.service.model!r} differs from A's "
                          f"{spec_a.service.model!r}: the same requests must suit both builds")
    a, b = Arm("a", spec_a), Arm("b", spec_b, args.fault_b, parse_fault_params(args.fault_param_b, "--fault-param-b"))
    load = signoff_load(args.duration_s, spec_a.service.model, args.rate_rps, args.request_rows)
    result = run_ab(a, b, load, args.out, pairs=args.rounds, rules=Rules(alpha=args.alpha, min_change=args.min_change),
                    platform=args.platform, warmup_s=args.warmup_s, deploy=args.deploy,
                    progress=ProgressDisplay("harness bench"))  # lines, and each pair's heartbeat as harness load shows it
    comparison = result["comparison"]
    print(json.dumps(comparison, indent=2, default=str) if args.json else format_comparison(comparison))
    if comparison["regressions"]:
        raise VerdictFailed(f"B regressed against A in {len(comparison['regressions'])} metric(s)", comparison["regressions"])
    return EXIT_OK


def run_compare_command(args: argparse.Namespace) -> int:
    """Run the A/A and A/B sessions and print the rates; with --check exit 1 when a target is missed."""
    from harness.bench.comparebench import CompareBenchSettings, format_compare_bench, run_compare_bench

    settings = CompareBenchSettings(
        same_sessions=args.same, slow_sessions=args.slow, factor=args.factor, pairs=args.pairs,
        duration_s=args.duration_s, warmup_s=args.warmup_s, rate_rps=args.rate_rps, request_rows=args.request_rows,
        model=args.model, deploy=args.deploy)
    result = run_compare_bench(settings, args.out, progress=_say)
    print(json.dumps(result, indent=2, default=str) if args.json else format_compare_bench(result))
    false_alarm, detection = result["false_alarm"]["rate"], result["detection"]["rate"]
    missed = []
    if false_alarm is not None and false_alarm > 0.05:
        missed.append(f"false-alarm rate {false_alarm:.1%} > 5%")
    if detection is not None and detection < 0.95:
        missed.append(f"detection rate {detection:.1%} < 95%")
    if args.check and missed:
        raise VerdictFailed("harness compare missed its targets", missed)
    return EXIT_OK
