"""`harness report DIR [--baseline DIR2]`: rebuild report.html, report.md and summary.json from saved data."""

from __future__ import annotations

import argparse

from harness.errors import UsageError
from harness.paths import path_type, validate_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="rebuild the report of a saved run from its data alone")
    parser.add_argument("run_dir", type=path_type("DIR"), metavar="DIR", help="a run directory (reports/<run-id>)")
    parser.add_argument("--baseline", type=path_type("--baseline"), metavar="DIR", help="also compare against this saved run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_runs
    from harness.report.writer import write_report

    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise UsageError(f"DIR={str(run_dir)!r}: not a directory")
    validate_output_dir(run_dir, "DIR")  # the report is written into it
    comparison = None
    if args.baseline:
        if not args.baseline.is_dir():
            raise UsageError(f"--baseline={str(args.baseline)!r}: not a directory")
        comparison = compare_runs(run_dir, args.baseline)
    paths = write_report(run_dir, comparison=comparison)
    for kind in ("html", "markdown", "summary"):
        print(paths[kind])
    return 0
