"""The cgroup filesystem as this process sees it: which hierarchy (v1 or v2) holds the memory and cpu
controllers, where this process's own cgroup is in each, and the writes that set them up.

Read from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``; `harness.platforms.local.cgroups`
creates the deployments' cgroups on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hierarchy", "find_hierarchies", "write_value", "candidates", "enable_v2"]


@dataclass(frozen=True)
class Hierarchy:
    """One cgroup hierarchy holding a controller: its version, mount point and this process's cgroup in it."""

    version: int  # 1 or 2
    mount: Path
    own: Path  # the cgroup this process is in, inside this hierarchy


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """Return (fstype, mount point, super options) of every cgroup mount."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3 or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((rparts[0], Path(parts[4]), set(rparts[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Return this process's cgroup path per v1 controller, and under "" its v2 path."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def find_hierarchies() -> dict[str, Hierarchy]:
    """Return the hierarchy that holds each of the "memory" and "cpu" controllers, where one does."""
    own = _own_paths()
    found: dict[str, Hierarchy] = {}
    for fstype, mount, options in _mounts():
        if fstype == "cgroup":
            for controller in ("memory", "cpu"):
                if controller in options and controller not in found:
                    found[controller] = Hierarchy(1, mount, mount / own.get(controller, "/").lstrip("/"))
    for fstype, mount, _ in _mounts():
        if fstype != "cgroup2":
            continue
        try:
            available = set((mount / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        for controller in ("memory", "cpu"):
            if controller in available and controller not in found:
                found[controller] = Hierarchy(2, mount, mount / own.get("", "/").lstrip("/"))
    return found


def write_value(path: Path, value: str) -> None:
    """Write ``value`` to the cgroup control file ``path`` (raises OSError)."""
    with open(path, "w") as handle:
        handle.write(value)


def candidates(hierarchy: Hierarchy) -> list[Path]:
    """Return where a harness parent may go: our own cgroup first, then its ancestors up to the mount."""
    out, path = [], hierarchy.own
    while True:
        out.append(path)
        if path == hierarchy.mount or hierarchy.mount not in path.parents:
            break
        path = path.parent
    return out


def enable_v2(base: Path, controllers: set[str]) -> None:
    """Enable ``controllers`` for the children of ``base`` (raises OSError, e.g. EBUSY for a busy cgroup)."""
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    missing = controllers - enabled
    if missing:
        write_value(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
