"""`harness compare DIR --baseline DIR2`: per part and metric, the change and whether it is a regression
beyond run-to-run noise; exit 1 on a regression (inconclusive is printed, not a failure)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.errors import ConfigError, UsageError, VerdictFailed
from harness.paths import path_type

DESCRIPTION = """\
Compare a saved run with a baseline run, part by part (parts matched by path: load, chaos/pod-kill/single).

Load parts are judged on their rounds (harness load --rounds N: each round a fresh deployment), never
on windows of one run: paired t-test on per-pair log-ratios when both runs come from one interleaved
session (harness bench ab), else Welch's t on the logs of the rounds (widened by the spread of
--history runs). Fewer than 3 rounds a side is "inconclusive", with how to get more. A metric
regressed when the one-sided p of "worse", Holm-adjusted over the part's metrics, is < --alpha AND its
median change is at least --min-change in the worse direction; a change that large but within the
noise is "inconclusive" (more rounds would tell). Chaos cells: TTR, outage and unavailability regressed when
they grew by more than max(--min-increase-s, --min-increase-ratio x baseline); failed requests by
Fisher's exact test at --alpha and an increase of at least --min-failed-increase. Sweep points repeat
windows inside one run: shown, never judged. The full definition: harness.measure.regression.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare a saved run against a baseline run (exit 1 on a regression beyond run-to-run noise)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=path_type("DIR"), metavar="DIR", help="the current run directory")
    parser.add_argument("--baseline", type=path_type("--baseline"), metavar="DIR", required=True,
                        help="the baseline run directory")
    parser.add_argument("--history", type=path_type("--history"), metavar="DIR", nargs="+", default=[],
                        help="earlier runs of the baseline's build, used only to estimate run-to-run noise")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="family-wise false-alarm level per part (Holm over its metrics; default 0.01)")
    parser.add_argument("--min-change", type=float, default=0.05,
                        help="smallest relative change of a load metric's median that counts (default 0.05)")
    parser.add_argument("--min-increase-s", type=float, default=2.0,
                        help="chaos TTR/outage/unavailability: smallest growth in seconds that counts (default 2)")
    parser.add_argument("--min-increase-ratio", type=float, default=0.5,
                        help="... or this share of the baseline, whichever is larger (default 0.5)")
    parser.add_argument("--min-failed-increase", type=float, default=0.02,
                        help="chaos failed-request fraction: smallest increase that counts (default 0.02)")
    parser.set_defaults(func=run)


def rules_from(args: argparse.Namespace) -> Any:
    """Return the `Rules` of the command-line thresholds; raise ConfigError naming a bad flag."""
    from harness.measure.regression import Rules

    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", args.alpha, "must be between 0 and 1")
    for flag in ("min_change", "min_increase_s", "min_increase_ratio", "min_failed_increase"):
        if not getattr(args, flag) >= 0:
            raise ConfigError("--" + flag.replace("_", "-"), getattr(args, flag), "must be >= 0")
    return Rules(alpha=args.alpha, min_change=args.min_change, floor_s=args.min_increase_s,
                 ratio=args.min_increase_ratio, min_failed_increase=args.min_failed_increase)


def format_comparison(result: dict[str, Any]) -> str:
    """Return the comparison as a table (metric, baseline, current, change, verdict, reason) with its
    warnings first and a closing line counting verdicts."""
    def number(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    lines = [f"warning: {w}" for w in result["warnings"]]
    rows = result["rows"]
    width = max((len(r["metric"]) for r in rows), default=10)
    lines.append(f"{'metric':<{width}}  {'baseline':>10}  {'current':>10}  {'change':>8}  {'verdict':<12}  reason")
    for row in rows:
        points = (row.get("extra") or {}).get("change_unit") == "points"
        change = ("n/a" if row["change"] is None else f"{100 * row['change']:+.1f}pt" if points
                  else f"{row['change']:+.1%}")
        verdict = row["verdict"].upper() if row["verdict"] in ("regressed", "inconclusive") else row["verdict"]
        lines.append(f"{row['metric']:<{width}}  {number(row['baseline']):>10}  {number(row['current']):>10}  "
                     f"{change:>8}  {verdict:<12}  {row['reason']}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    lines.append("verdicts: " + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "none"))
    if result["inconclusive"]:
        lines.append(f"{len(result['inconclusive'])} metric(s) INCONCLUSIVE: too little data to tell a change from "
                     "run-to-run noise (not a failure; the reasons say how to get more)")
    lines.append(f"rule: {result['rule']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_runs

    for flag, value in (("DIR", args.run_dir), ("--baseline", args.baseline),
                        *(("--history", h) for h in args.history)):
        if not value.is_dir():
            raise UsageError(f"{flag}={str(value)!r}: not a directory")
    result = compare_runs(args.run_dir, args.baseline, rules_from(args), history=args.history)
    if args.json:
        from harness.jsonfile import to_jsonable

        print(json.dumps(to_jsonable(result), indent=2))
    else:
        print(format_comparison(result))
    if result["regressions"]:
        raise VerdictFailed(f"{len(result['regressions'])} regression(s) beyond run-to-run noise", result["regressions"])
    return 0
