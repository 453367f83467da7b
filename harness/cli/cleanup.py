"""`harness cleanup`: remove what harness runs killed outright left on this machine.

A run killed with SIGKILL (or by the OOM killer) tears nothing down: its children die with it, but
its cgroups and its state file stay (`harness.platforms.local.cleanup` says which and why). Every
local deployment removes them as it starts; this command does it now, across every cgroup branch of
the machine. Nothing of a running harness is touched. One line per thing removed on stdout.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import EXIT_OK, HarnessError

__all__ = ["register", "run_cleanup"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cleanup`` subcommand."""
    parser = subparsers.add_parser(
        "cleanup",
        help="remove the cgroups and state files that killed harness runs left behind",
        description="Remove what harness runs killed outright (SIGKILL, OOM) left on this machine: their cgroups "
                    "(harness-<pid>...) and their state files, whose replicas no longer run. A cgroup or file of a "
                    "running harness is never touched; a killed run's leftover process (an orphan) is killed.",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    parser.set_defaults(func=run_cleanup)


def run_cleanup(args: argparse.Namespace) -> int:
    """Remove stale leftovers and print what was removed; return 0. Raises HarnessError (exit 3) naming what is left."""
    from harness.platforms.local.cleanup import sweep_stale

    report = sweep_stale(everywhere=True, dry_run=args.dry_run)
    for line in report.lines(dry_run=args.dry_run):
        print(line)
    if not report.cgroups and not report.files:
        print("nothing left behind by a killed run")
    for problem in report.problems:
        print(f"harness cleanup: {problem}", file=sys.stderr)
    if report.problems:
        count = len(report.problems)
        raise HarnessError(f"{count} stale item(s) could not be removed; the first: {report.problems[0]}")
    return EXIT_OK
