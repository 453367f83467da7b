"""User-given paths, made absolute once where they enter the harness.

A relative path means "relative to where the user stood", and only the entry point knows where that
was: a child process started with another ``cwd`` (Locust runs in its output directory) reads the
same relative path against its own directory, and its records land somewhere else. So every entry
point resolves its paths here, as click's ``Path(resolve_path=True)`` does: ``~`` expanded, made
absolute against the current directory, normalised (symlinks resolved). What is handed down, to
libraries and to child processes (argv, environment, ``cwd``), is absolute.

- `resolve_path` for library entry points (``run_job(out_dir=...)``, ``run_locust(out_dir=...)``);
- `path_type` for command-line flags: ``parser.add_argument("--spec", type=path_type("--spec"))``
  (``--out`` is declared once, by `harness.cli._options.add_out`);
- `validate_output_dir` and `validate_output_file` for where a command will write, called before it
  deploys anything (every ``--out`` once, by `harness.cli._options.validate_output_dirs`): a location
  that is a file (or a directory, for a file), lies under a file, or cannot be written is refused
  then, not as a traceback once a deployment is up.
  (Not in ``path_type``: `harness render --runner-command` parses a command line that writes in
  the cluster, where a path need not exist here.)

Both refuse an empty path with a `ConfigError` (exit 2) naming the flag or field, never read it as
"here". A ConfigError raised by a ``type=`` converter passes through argparse, whose own errors it
does not catch; `harness.cli.main` turns it into the message and the exit code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError

__all__ = ["resolve_path", "path_type", "validate_output_dir", "validate_output_file"]


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


def validate_output_dir(path: Path, field: str) -> None:
    """Raise ConfigError naming ``field`` unless ``path`` is, or can be made, a writable directory.

    Refused: an existing file; a path under a file; an existing directory, or the nearest existing
    one above a missing path (which the command will create), that this user cannot write to.
    """
    if _exists(path, field) and not path.is_dir():
        raise ConfigError(field, str(path), "exists and is not a directory")
    _validate_writable(path, field)


def validate_output_file(path: Path, field: str) -> None:
    """Raise ConfigError naming ``field`` unless a file can be written at ``path``.

    Refused: an existing directory; a path under a file; a directory to hold it that cannot be
    written (or created); an existing file this user cannot write to.
    """
    if _exists(path, field) and path.is_dir():
        raise ConfigError(field, str(path), "is a directory; give the path of a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(field, str(path), "exists and is not writable")
    _validate_writable(path.parent, field, shown=path)  # written beside itself first, then renamed


def _validate_writable(directory: Path, field: str, *, shown: Path | None = None) -> None:
    # the nearest existing ancestor decides: it must be a directory this user may create entries in
    value = str(shown or directory)
    existing = directory
    while not _exists(existing, field):
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(field, value, f"is under {str(existing)!r}, which is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if str(existing) == value else f"cannot be created: {str(existing)!r} is not writable"
        raise ConfigError(field, value, what)


def _exists(path: Path, field: str) -> bool:
    try:
        return path.exists()  # False under a file too (ENOTDIR)
    except OSError as exc:  # no permission to look
        raise ConfigError(field, str(path), f"cannot be checked: {exc.strerror or exc}") from exc
