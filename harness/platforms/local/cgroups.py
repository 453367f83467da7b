"""Per-replica cgroups (v1 or v2, whichever the machine has) for `limits.memory` and `limits.cpu`.

Each deployment owns one parent cgroup per hierarchy, named ``harness-<pid>.<start>-<name>-<token>``
after its owner (`harness.platforms.local.owners`: a reused pid is told apart) under the cgroup this
process already lives in (so a session's own limits still apply), and one child per replica. The
memory limit is the kernel's: a replica that exceeds it is killed by the OOM killer, which the
cgroup's counters record (``oom_kill`` in memory.oom_control / memory.events). Where cgroups cannot
be written, memory falls back to RLIMIT_AS (an allocation fails instead of an OOM kill) and CPU to no
limit; the deployment records which mechanism was really used. The cgroups of a run killed outright
are removed by `harness.platforms.local.cleanup`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.platforms.local.cgroupfs import Hierarchy, candidates, enable_v2, find_hierarchies, write_value
from harness.platforms.local.owners import owner_tag, parse_owner

__all__ = [
    "CGROUP_V1",
    "CGROUP_V2",
    "RLIMIT",
    "NONE",
    "CPU_PERIOD_US",
    "ReplicaCgroup",
    "CgroupSet",
    "cgroup_base",
    "cgroup_owner",
    "cgroup_pids",
    "owned_cgroup_dirs",
    "remove_cgroup_dir",
]

CGROUP_V1 = "cgroup-v1"
CGROUP_V2 = "cgroup-v2"
RLIMIT = "rlimit"
NONE = "none"
CPU_PERIOD_US = 100_000
_OWNER = re.compile(r"^harness-(\d+(?:\.\d+)?)-")  # the owner tag (pid.start; pid alone: older names)
_REMOVE_TIMEOUT_S = 10.0
_log = logging.getLogger("harness.platforms.local")


@dataclass
class ReplicaCgroup:
    """The cgroup directories of one replica (v1: one per controller; v2: one)."""

    version: int
    dirs: list[Path]
    memory_dir: Path | None

    @property
    def path(self) -> str:
        return ",".join(str(d) for d in self.dirs)

    def procs_files(self) -> list[str]:
        """Return the cgroup.procs files a new replica process writes its pid into."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int | None:
        """Return the kernel's count of OOM kills in this cgroup, or None where the kernel does not say."""
        if self.memory_dir is None:
            return None
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.memory_dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def memory_failcnt(self) -> int | None:
        """Return how often the memory limit was hit (v1 memory.failcnt, v2 memory.events "max")."""
        if self.memory_dir is None:
            return None
        try:
            if self.version == 1:
                return int((self.memory_dir / "memory.failcnt").read_text())
            for line in (self.memory_dir / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def pids(self) -> set[int]:
        """Return the pids now in this replica's cgroups."""
        return {pid for directory in self.dirs for pid in cgroup_pids(directory)}

    def remove(self, timeout_s: float = _REMOVE_TIMEOUT_S) -> list[str]:
        """SIGKILL whatever is left inside, then rmdir; return problems (empty when all removed)."""
        return [problem for d in self.dirs if (problem := remove_cgroup_dir(d, timeout_s))]


def remove_cgroup_dir(directory: Path, timeout_s: float = _REMOVE_TIMEOUT_S) -> str | None:
    """SIGKILL every process in ``directory``, then rmdir it (retried while busy); return a problem or None."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            directory.rmdir()
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return f"cannot remove cgroup {directory}: {exc.strerror}"
        time.sleep(0.05)


@dataclass
class CgroupSet:
    """The cgroups of one deployment: a harness-owned parent per hierarchy and a child per replica.

    ``memory_enforcement`` / ``cpu_enforcement`` say what really limits a replica; ``warnings`` what
    could not be done. Construction never raises: an unwritable hierarchy becomes a fallback.
    """

    owner: str
    memory_limit_bytes: int | None
    cpu_limit_cores: float | None
    enabled: bool = True
    memory_enforcement: str = NONE
    cpu_enforcement: str = NONE
    warnings: list[str] = field(default_factory=list)
    _parents: dict[str, tuple[int, Path]] = field(default_factory=dict)  # controller -> (version, parent)
    _replicas: list[ReplicaCgroup] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.owner = f"harness-{owner_tag()}-{self.owner}-{secrets.token_hex(3)}"
        if not self.enabled:
            reason = "cgroups disabled by the caller"
        else:
            reason = self._create_parents()
        wanted_memory = self.memory_limit_bytes is not None
        wanted_cpu = self.cpu_limit_cores is not None
        if "memory" in self._parents:
            self.memory_enforcement = CGROUP_V1 if self._parents["memory"][0] == 1 else CGROUP_V2
        if "cpu" in self._parents and wanted_cpu:
            self.cpu_enforcement = CGROUP_V1 if self._parents["cpu"][0] == 1 else CGROUP_V2
        if wanted_memory and "memory" not in self._parents:
            self.memory_enforcement = RLIMIT
            self.warnings.append(f"limits.memory falls back to RLIMIT_AS (no kernel OOM kill): {reason}")
        if not wanted_memory:
            self.memory_enforcement = NONE
        if wanted_cpu and self.cpu_enforcement == NONE:
            self.warnings.append(f"limits.cpu is not enforced: {reason}")

    def _create_parents(self) -> str:
        """Create the harness parent in each usable hierarchy; return why a hierarchy was unusable."""
        hierarchies = find_hierarchies()
        if "memory" not in hierarchies:
            return "no cgroup memory controller is mounted"
        wanted = ["memory"] + (["cpu"] if self.cpu_limit_cores is not None else [])
        reasons = []
        for controller in wanted:
            hierarchy = hierarchies.get(controller)
            if hierarchy is None:
                reasons.append(f"no cgroup {controller} controller is mounted")
                continue
            shared = [(v, p) for v, p in self._parents.values() if p.parent in candidates(hierarchy)]
            if shared:  # v2, or v1 controllers mounted together: one parent serves both
                self._parents[controller] = shared[0]
                continue
            try:
                self._parents[controller] = (hierarchy.version, self._create_parent(hierarchy, wanted))
            except OSError as exc:
                reasons.append(f"cannot create a {controller} cgroup under {hierarchy.own}: {exc.strerror or exc}")
        return "; ".join(reasons)

    def _create_parent(self, hierarchy: Hierarchy, controllers: list[str]) -> Path:
        last: OSError | None = None
        for base in candidates(hierarchy):
            parent = base / self.owner
            try:
                if hierarchy.version == 2:
                    available = set((hierarchy.mount / "cgroup.controllers").read_text().split())
                    wanted = set(controllers) & available
                    enable_v2(base, wanted)
                    parent.mkdir()
                    enable_v2(parent, wanted)
                else:
                    parent.mkdir()
                return parent
            except OSError as exc:
                last = exc
                if parent.exists():
                    remove_cgroup_dir(parent, 1.0)
        assert last is not None
        raise last

    def create_replica(self, name: str) -> ReplicaCgroup | None:
        """Return a new cgroup for replica ``name`` with the limits set, or None where cgroups are not used.

        A failure here (a limit the kernel refuses) downgrades the enforcement and records a warning.
        """
        if "memory" not in self._parents:
            return None
        version, parent = self._parents["memory"]
        dirs, memory_dir = [], parent / name
        try:
            memory_dir.mkdir(exist_ok=True)
            dirs.append(memory_dir)
            if self.memory_limit_bytes is not None:
                self._limit_memory(version, memory_dir, self.memory_limit_bytes)
            if self.cpu_limit_cores is not None and "cpu" in self._parents:
                cpu_version, cpu_parent = self._parents["cpu"]
                cpu_dir = cpu_parent / name
                if cpu_dir != memory_dir:
                    cpu_dir.mkdir(exist_ok=True)
                    dirs.append(cpu_dir)
                quota_us = max(1000, int(self.cpu_limit_cores * CPU_PERIOD_US))
                if cpu_version == 1:
                    write_value(cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    write_value(cpu_dir / "cpu.cfs_quota_us", str(quota_us))
                else:
                    write_value(cpu_dir / "cpu.max", f"{quota_us} {CPU_PERIOD_US}")
        except OSError as exc:
            for directory in dirs:
                remove_cgroup_dir(directory, 1.0)
            self.warnings.append(f"cannot set the cgroup limits of {name}: {exc.strerror or exc}")
            self._parents.clear()
            self.memory_enforcement = RLIMIT if self.memory_limit_bytes is not None else NONE
            self.cpu_enforcement = NONE
            return None
        cgroup = ReplicaCgroup(version, dirs, memory_dir)
        self._replicas.append(cgroup)
        return cgroup

    @staticmethod
    def _limit_memory(version: int, directory: Path, limit: int) -> None:
        if version == 1:
            write_value(directory / "memory.limit_in_bytes", str(limit))
            # swap would let the process outlive the limit instead of being OOM-killed
            if (directory / "memory.memsw.limit_in_bytes").exists():
                write_value(directory / "memory.memsw.limit_in_bytes", str(limit))
            else:
                write_value(directory / "memory.swappiness", "0")
        else:
            write_value(directory / "memory.max", str(limit))
            if (directory / "memory.swap.max").exists():
                write_value(directory / "memory.swap.max", "0")

    def remove_replica(self, cgroup: ReplicaCgroup) -> list[str]:
        """Remove one replica's cgroup (a scale-down); return problems (empty when removed)."""
        if cgroup in self._replicas:
            self._replicas.remove(cgroup)
        return cgroup.remove()

    def rlimit_as_bytes(self) -> int | None:
        """Return the RLIMIT_AS a replica gets (the fallback), or None when the cgroup enforces memory."""
        return self.memory_limit_bytes if self.memory_enforcement == RLIMIT else None

    def remove(self) -> list[str]:
        """Remove every replica cgroup and the parents (killing what is left inside); return problems."""
        problems: list[str] = []
        for cgroup in self._replicas:
            problems += cgroup.remove()
        self._replicas.clear()
        for _, parent in {p for p in self._parents.values()}:
            if problem := remove_cgroup_dir(parent, _REMOVE_TIMEOUT_S):
                problems.append(problem)
        return problems


def cgroup_base(controller: str = "memory") -> Path | None:
    """Return where harness parents of ``controller`` go first (this process's own cgroup), or None."""
    hierarchy = find_hierarchies().get(controller)
    return hierarchy.own if hierarchy else None


def owned_cgroup_dirs(pid: int | None = None, *, everywhere: bool = False) -> list[Path]:
    """Return the harness parent cgroups that exist now (those of process ``pid`` only, if given).

    They are looked for where `CgroupSet` creates them: in this process's own cgroup and its
    ancestors. ``everywhere`` searches each whole hierarchy instead (runs started from another login
    session or service live in another branch).
    """
    found = set()
    for hierarchy in find_hierarchies().values():
        for directory in _harness_dirs(hierarchy, everywhere):
            owner = cgroup_owner(directory)
            if owner is not None and (pid is None or owner[0] == pid):
                found.add(directory)
    return sorted(found)


def _harness_dirs(hierarchy: Hierarchy, everywhere: bool) -> list[Path]:
    if everywhere:
        found = []
        for root, dirs, _ in os.walk(hierarchy.mount):
            ours = [d for d in dirs if _OWNER.match(d)]
            found += [Path(root) / d for d in ours]
            dirs[:] = [d for d in dirs if d not in ours]  # below a harness parent: its replicas
        return found
    found = []
    for base in candidates(hierarchy):
        try:
            found += [c for c in base.iterdir() if _OWNER.match(c.name) and c.is_dir()]
        except OSError:
            continue
    return found


def cgroup_owner(directory: Path) -> tuple[int, int | None] | None:
    """Return the owner (pid, start ticks or None) a harness parent cgroup is named after, None for another name."""
    match = _OWNER.match(directory.name)
    return parse_owner(match.group(1)) if match else None


def cgroup_pids(directory: Path) -> list[int]:
    """Return the pids in one cgroup directory (empty when it is gone or unreadable)."""
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
