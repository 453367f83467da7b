"""Options that several commands share, each declared in one place.

``--out`` (the directory a command writes its run into) is declared by `add_out` and nowhere else.
Its value is made absolute as argparse reads it (`harness.paths.path_type`: relative to where the
user stood, before any child process runs with another ``cwd``), and `validate_output_dirs`, which
`harness.cli.main` calls once after parsing and before the command runs, refuses one that is a
file, lies under a file or cannot be written: one line naming ``--out`` and the value, exit 2,
before anything is deployed. No command checks its ``--out`` itself.

(The check is not in the ``type=`` converter: `harness render --runner-command` parses a harness
command line that runs in the cluster, where ``/results/...`` need not exist or be writable here.)

``--preset`` (the size of a run: smoke, nightly) is declared by `add_preset`; ``--profile``, its name
before "profile" came to mean a load profile only, is still accepted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from harness.paths import path_type, resolve_path, validate_output_dir

__all__ = ["OUT_FLAG", "PRESET_FLAGS", "add_out", "add_preset", "validate_output_dirs"]

OUT_FLAG = "--out"
PRESET_FLAGS = ("--preset", "--profile")  # --profile: its name before "profile" came to mean a load shape only
_OUTPUT_DIRS = "_output_dirs"  # the namespace attribute naming the output directories a command declared: {dest: flag}

OutDefault = str | Callable[[], str] | None


def add_out(parser: argparse.ArgumentParser, *, required: bool = False, default: OutDefault = None,
            default_help: str | None = None, what: str = "output directory") -> None:
    """Declare ``--out DIR`` on ``parser``: resolved to an absolute Path, checked once before the command runs.

    ``required``: the command has no default. ``default``: a path (relative to the current
    directory), a callable returning one when the command runs (``reports/bench-stall-<time>``), or
    None, when the command (or the library it calls) chooses one itself; ``default_help`` says what
    that default is in ``--help`` (default: ``default`` when it is a path). ``what``: what the
    directory receives, the start of the help text. Raises ValueError for a required flag with a
    default (a programming error).
    """
    if required and default is not None:
        raise ValueError("a required --out has no default")
    shown = default_help if default_help is not None else (default if isinstance(default, str) else None)
    help_text = what if required or shown is None else f"{what} (default: {shown})"
    parser.add_argument(OUT_FLAG, dest="out", required=required, default=default, type=path_type(OUT_FLAG),
                        metavar="DIR", help=help_text)
    parser.set_defaults(**{_OUTPUT_DIRS: {"out": OUT_FLAG}})


def validate_output_dirs(args: argparse.Namespace) -> None:
    """Resolve a deferred default and check every output directory the command declared, in place.

    A default given as a callable is called now and resolved; a None stays None (the command picks
    one). Raises ConfigError naming the flag and the value (exit 2) for one that cannot be written.
    """
    for dest, flag in getattr(args, _OUTPUT_DIRS, {}).items():
        value = getattr(args, dest, None)
        if callable(value):
            value = resolve_path(value(), flag)
        elif isinstance(value, str):  # a default that did not pass through the type= converter
            value = resolve_path(value, flag)
        if value is None:
            continue
        validate_output_dir(value, flag)
        setattr(args, dest, Path(value))


def add_preset(parser: argparse.ArgumentParser, *, choices: tuple[str, ...] = ("smoke", "nightly"),
               default: str = "smoke") -> None:
    """Declare ``--preset NAME`` (the size of a run: smoke, nightly, ...) on ``parser``; ``--profile`` still works.

    The value is checked against ``choices`` by the code that looks it up (a ConfigError naming it).
    """
    parser.add_argument(*PRESET_FLAGS, dest="preset", default=default, metavar="NAME",
                        help=f"{' | '.join(choices)} (default {default}); --profile is its former name")
