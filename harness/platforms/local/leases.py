"""Leases: where the local platform notes each live deployment, so that a run killed outright can be found.

A deployment writes a lease as it starts, ``<runtime dir>/deployments/<owner>-<token>.json``, naming
its owner (pid and start time, `harness.platforms.local.owners`), its state file and its work
directory, and removes it as its teardown ends. A lease whose owner is gone is therefore the note of
a run that never tore down (SIGKILL, the OOM killer): its state file still lists replicas as Running,
with pids and ports that are no longer theirs (a chaos tool reading it could signal whatever reused
a pid) and the fault token. `harness.platforms.local.cleanup` removes those.

The runtime dir is ``$HARNESS_RUNTIME_DIR`` or ``<temp dir>/harness-<uid>``; it is used only while it
is a directory of this user that nobody else can write (another user could plant leases otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.atomicfile import replace_text
from harness.platforms.local.owners import owner_tag, parse_owner

__all__ = ["ENV_RUNTIME_DIR", "Lease", "runtime_dir", "leases_dir", "write_lease", "remove_lease", "read_leases"]

ENV_RUNTIME_DIR = "HARNESS_RUNTIME_DIR"
_LEASES = "deployments"
_log = logging.getLogger("harness.platforms.local")


@dataclass(frozen=True)
class Lease:
    """One deployment's note: the lease file, its owner (pid, start ticks), the state file and workdir."""

    path: Path
    owner: tuple[int, int | None]
    state_path: Path | None
    workdir: Path | None


def runtime_dir() -> Path:
    """Return the harness's runtime dir: ``$HARNESS_RUNTIME_DIR`` or ``<temp dir>/harness-<uid>``."""
    configured = os.environ.get(ENV_RUNTIME_DIR)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"harness-{os.getuid()}"


def leases_dir(*, create: bool = False) -> Path:
    """Return the directory of the leases (made 0700 when ``create``).

    Raises OSError naming the directory when it (or the runtime dir) is not a directory of this user
    that only this user can write.
    """
    directory = runtime_dir() / _LEASES
    if create:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    for path in (directory.parent, directory):
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise OSError(f"{path} is not a directory of this user that only this user can write")
    return directory


def write_lease(state_path: Path, workdir: Path) -> Path | None:
    """Note a starting deployment of this process; return the lease's path (None, logged, where it cannot)."""
    try:
        path = leases_dir(create=True) / f"{owner_tag()}-{secrets.token_hex(4)}.json"
        replace_text(path, json.dumps({"state_path": str(state_path), "workdir": str(workdir),
                                       "created_s": time.time()}), private=True, fsync=False)
    except OSError as exc:
        _log.warning("local platform: no lease for this deployment (a kill would leave its state file): %s", exc)
        return None
    return path


def remove_lease(path: Path | None) -> None:
    """Remove a lease (the deployment it notes has torn down); nothing for None or a lease already gone."""
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            _log.warning("local platform: cannot remove the lease %s: %s", path, exc)


def read_leases() -> list[Lease]:
    """Return every lease there is (one that cannot be read names no state file). Raises OSError as `leases_dir`."""
    try:
        directory = leases_dir()
    except FileNotFoundError:
        return []
    leases = []
    for path in sorted(directory.glob("*.json")):
        owner = parse_owner(path.name.partition("-")[0])
        if owner is None:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        state, workdir = data.get("state_path"), data.get("workdir")
        leases.append(Lease(path, owner, Path(state) if isinstance(state, str) else None,
                            Path(workdir) if isinstance(workdir, str) else None))
    return leases
