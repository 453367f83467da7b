"""Atomic file replacement: readers see the old file or the new one, never half of either.

At the bottom of the layering (beside config and errors) so that platforms, results and everything
between write their state and records the same way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["replace_text"]


def replace_text(path: str | Path, text: str, *, private: bool = False, fsync: bool = True) -> Path:
    """Replace ``path`` with ``text`` (temp file in the same directory + rename); return the path.

    ``private`` keeps the file 0600 (it holds a secret); otherwise it is 0644. Raises OSError.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if not private:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
