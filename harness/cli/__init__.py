"""The `harness` command line: subcommands are discovered from the modules of this package.

Each module ``harness/cli/<name>.py`` defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as a default. Command modules import heavy libraries (torch, locust,
pandas) inside their functions, never at module level, so `harness --help` stays fast. Only this
module turns `HarnessError` into a message and an exit code; argparse's own errors (an unknown flag,
a bad choice) are one of them too, one line and exit 2, as every other bad input is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness import __version__
from harness.cli._exit_codes import exit_codes_help
from harness.cli._options import validate_output_dirs
from harness.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, HarnessError, UsageError
from harness.signals import answer_interrupts, interrupts_held

__all__ = ["main", "build_parser"]


class _ArgumentsError(UsageError):
    """What argparse found wrong with the command line, with the prog of the parser that found it."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage and exits; its subparsers are made of the parser's own class
    def error(self, message: str) -> NoReturn:
        raise _ArgumentsError(self.prog, message)

    def format_help(self) -> str:
        # every --help ends with its command's exit codes, kept as lines whatever the formatter class
        command = self.prog.removeprefix("harness").strip()
        return f"{super().format_help()}\n{exit_codes_help(command)}\n"


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every discovered subcommand registered.

    Its errors (an unknown flag, a bad choice, a missing argument) raise a `UsageError` (exit 2)
    instead of printing the usage and exiting.
    """
    parser = _Parser(
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


def main(argv: Sequence[str] | None = None, *, noted_interrupts: list[int] | None = None) -> int:
    """Run the CLI; return the exit code (0 pass, 1 verdict failed, 2 usage/config error, 3 runtime, 130 interrupted).

    A Ctrl-C while the commands import and the arguments parse is held until that is done (raised
    inside an import, a KeyboardInterrupt can end in a traceback or be swallowed by the library being
    imported), then answered with one line and 130. ``noted_interrupts``: the list a caller's own
    SIGINT handler appends to until this takes over (`harness.__main__`); one noted counts the same.
    """
    prefix = "harness"  # "harness <command>" once the command is known
    try:
        if noted_interrupts is not None:  # the caller's noting handler gives way to the usual one
            answer_interrupts()
        with interrupts_held():
            if noted_interrupts:
                raise KeyboardInterrupt
            parser = build_parser()
            args = parser.parse_args(argv)  # a type= converter's HarnessError (harness.paths) passes through
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        prefix = f"harness {args.command}"
        validate_output_dirs(args)  # every --out, checked once here and by no command (harness.cli._options)
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader went away (`harness compare --json | head`): no traceback; stdout now goes to
        # /dev/null so the interpreter's last flush cannot raise again
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except HarnessError as exc:
        print(f"{getattr(exc, 'prog', prefix)}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _forget_caught_interrupts()


def _forget_caught_interrupts() -> None:
    # CPython 3.11 marks a KeyboardInterrupt raised inside exec() of a string (scipy.stats runs some as
    # it imports) as unhandled even once caught, and `python -m` then ends by SIGINT instead of with
    # our exit code; an exec() of a string that completes clears the mark.
    exec("pass")  # noqa: S102


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in tests): nothing to flush
        pass


def _entry() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
