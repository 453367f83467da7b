"""User-given paths, made absolute once where they enter the harness.

A relative path means "relative to where the user stood", and only the entry point knows where that
was: a child process started with another ``cwd`` (Locust runs in its output directory) reads the
same relative path against its own directory, and its records land somewhere else. So every entry
point resolves its paths here, as click's ``Path(resolve_path=True)`` does: ``~`` expanded, made
absolute against the current directory, normalised (symlinks resolved). What is handed down, to
libraries and to child processes (argv, environment, ``cwd``), is absolute.

- `resolve_path` for library entry points (``run_job(out_dir=...)``, ``run_locust(out_dir=...)``);
- `path_type` for command-line flags: ``parser.add_argument("--out", type=path_type("--out"))``.

Both refuse an empty path with a `ConfigError` (exit 2) naming the flag or field, never read it as
"here". A ConfigError raised by a ``type=`` converter passes through argparse, whose own errors it
does not catch; `harness.cli.main` turns it into the message and the exit code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError

__all__ = ["resolve_path", "path_type"]


def resolve_path(value: str | os.PathLike[str], field: str = "path") -> Path:
    """Return ``value`` as an absolute, normalised path (``~`` expanded, symlinks resolved).

    The path need not exist. Raises ConfigError naming ``field`` for an empty path or one that cannot
    be resolved (``~nobody``, a symlink loop).
    """
    text = os.fspath(value)
    if not text.strip():
        raise ConfigError(field, text, "an empty path; name a file or directory (use . for the current one)")
    try:
        return Path(text).expanduser().resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # an unknown ~user, a symlink loop, a NUL byte
        raise ConfigError(field, text, f"cannot be resolved: {exc}") from exc


def path_type(flag: str) -> Callable[[str], Path]:
    """Return an argparse ``type=`` converter that resolves the value of ``flag`` with `resolve_path`."""

    def convert(value: str) -> Path:
        return resolve_path(value, flag)

    convert.__name__ = f"path {flag}"  # what argparse would name in its own messages
    return convert
