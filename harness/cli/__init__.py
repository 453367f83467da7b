"""The `harness` command line: subcommands are discovered from the modules of this package.

Each module ``harness/cli/<name>.py`` defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as a default. Command modules import heavy libraries (torch, locust,
pandas) inside their functions, never at module level, so `harness --help` stays fast. Only this
module turns `HarnessError` into a message and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import EXIT_USAGE, HarnessError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Chaos and performance benchmarking harness for GPU inference services.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 pass, 1 verdict failed, 2 usage/config error, 3 runtime)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except HarnessError as exc:  # a type= converter's (harness.paths): argparse passes ours through
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130


def _entry() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
