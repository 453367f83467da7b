"""`harness compare DIR --baseline DIR2`: per metric, baseline vs current, beyond noise or not; exit 1 on a regression."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import ConfigError, UsageError, VerdictFailed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="compare a saved run against a baseline run (exit 1 on regression)")
    parser.add_argument("run_dir", metavar="DIR", help="the current run directory")
    parser.add_argument("--baseline", metavar="DIR", required=True, help="the baseline run directory")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--alpha", type=float, default=0.01, help="significance level of the test (default 0.01)")
    parser.add_argument("--min-change", type=float, default=0.10,
                        help="smallest relative change of the median that counts (default 0.10)")
    parser.add_argument("--window-s", type=float, default=2.0, help="measurement window for load runs (default 2 s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import Thresholds, compare_runs

    for flag, value in (("DIR", args.run_dir), ("--baseline", args.baseline)):
        if not Path(value).is_dir():
            raise UsageError(f"{flag}={value!r}: not a directory")
    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", args.alpha, "must be between 0 and 1")
    if args.min_change < 0:
        raise ConfigError("--min-change", args.min_change, "must be >= 0")
    if args.window_s <= 0:
        raise ConfigError("--window-s", args.window_s, "must be > 0")
    thresholds = Thresholds(alpha=args.alpha, min_relative_change=args.min_change, window_s=args.window_s)
    result = compare_runs(args.run_dir, args.baseline, thresholds)
    if args.json:
        from harness.results import to_jsonable

        print(json.dumps(to_jsonable(result), indent=2))
    else:
        for warning in result["warnings"]:
            print(f"warning: {warning}")
        width = max((len(r["metric"]) for r in result["rows"]), default=10)
        print(f"{'metric':<{width}}  {'baseline':>12}  {'current':>12}  {'change':>8}  verdict")
        for row in result["rows"]:
            print(f"{row['metric']:<{width}}  {row['baseline']:>12.4g}  {row['current']:>12.4g}  "
                  f"{row['change']:>+8.1%}  {row['verdict']}")
    if result["regressions"]:
        raise VerdictFailed(f"{len(result['regressions'])} regression(s) beyond noise", result["regressions"])
    return 0
