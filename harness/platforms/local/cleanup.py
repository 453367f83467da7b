"""What a harness run killed outright leaves on the machine, found and removed.

A harness killed with SIGKILL (or by the OOM killer) runs no teardown. Its replicas, balancer and
load generators die with it (each child asks the kernel for SIGKILL when its parent dies:
`harness.processes`), but two things stay behind:

- its cgroups, ``harness-<owner>-...`` (`harness.platforms.local.cgroups`), empty once its children died;
- its lease and state file (`harness.platforms.local.leases`): the state file still lists replicas as
  Running, with pids and ports that are no longer theirs, and the fault token.

Each is *stale* when its owner (pid and start time, `harness.platforms.local.owners`) is gone.
`sweep_stale` removes what is stale: every local deployment calls it as it starts (the cgroups beside
this process), and ``harness cleanup`` for the whole machine. Nothing of a running owner is touched,
nor a stale cgroup holding a process whose parent still runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.platforms.local.cgroups import cgroup_owner, cgroup_pids, owned_cgroup_dirs, remove_cgroup_dir
from harness.platforms.local.leases import Lease, read_leases
from harness.platforms.local.owners import owner_alive

__all__ = ["CleanupReport", "stale_cgroup_dirs", "remove_stale_cgroup", "sweep_stale"]

_log = logging.getLogger("harness.platforms.local")
_CGROUP_REMOVE_TIMEOUT_S = 2.0


@dataclass
class CleanupReport:
    """What `sweep_stale` removed (or would remove, in a dry run), and what it had to keep, with why."""

    cgroups: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # state files, their temp files, leases
    killed_pids: list[int] = field(default_factory=list)  # orphans found in a stale cgroup
    problems: list[str] = field(default_factory=list)

    def lines(self, *, dry_run: bool = False) -> list[str]:
        """Return one line per cgroup and file removed (or that would be) and per process killed."""
        verb = "would remove" if dry_run else "removed"
        return ([f"{verb} stale cgroup {c}" for c in self.cgroups] + [f"{verb} stale file {f}" for f in self.files]
                + [f"killed leftover process {pid}" for pid in self.killed_pids])


def stale_cgroup_dirs(*, everywhere: bool = False) -> list[Path]:
    """Return the harness parent cgroups whose owner is gone (dead, or its pid now another process's).

    ``everywhere``: in every branch of each hierarchy, not only beside this process.
    """
    return [d for d in owned_cgroup_dirs(everywhere=everywhere)
            if (owner := cgroup_owner(d)) is not None and not owner_alive(*owner)]


def remove_stale_cgroup(parent: Path) -> tuple[list[int], str | None]:
    """Remove a stale harness cgroup and its replicas' cgroups; return (pids killed, problem or None).

    A process still inside is an orphan of the dead run and is SIGKILLed, unless its parent still
    runs: then it belongs to a running process (a live harness), and the cgroup is left untouched.
    """
    try:
        dirs = [c for c in parent.iterdir() if c.is_dir()] + [parent]
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], f"cannot read cgroup {parent}: {exc.strerror or exc}"
    pids = {pid for d in dirs for pid in cgroup_pids(d)}
    for pid in sorted(pids):
        ppid = _parent_pid(pid)
        if ppid is not None and ppid > 1 and ppid not in pids and owner_alive(ppid, None):
            return [], f"kept cgroup {parent}: its process {pid} has a running parent (pid {ppid})"
    problems = [p for d in dirs if (p := remove_cgroup_dir(d, _CGROUP_REMOVE_TIMEOUT_S))]  # kills what is inside
    return sorted(pids), problems[0] if problems else None


def _parent_pid(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def _stale_files(lease: Lease, live_state_paths: set[Path]) -> list[Path]:
    """Return the files a dead deployment left: its state file (while it still names that run), temp files."""
    files: list[Path] = []
    state = lease.state_path
    if state is not None and state not in live_state_paths:  # a live deployment writes there now
        try:
            data = json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("platform") == "local" and data.get("harness_pid") == lease.owner[0]:
            files.append(state)
        files += sorted(state.parent.glob(f".{state.name}.*.tmp"))  # a write cut off by the kill
    return files + [lease.path]


def sweep_stale(*, everywhere: bool = False, dry_run: bool = False) -> CleanupReport:
    """Remove stale cgroups, state files and leases (see the module docs); return what was done.

    ``dry_run`` only reports what would be removed. Never raises: a failure is a problem in the report.
    """
    report = CleanupReport()
    for parent in stale_cgroup_dirs(everywhere=everywhere):
        if dry_run:
            report.cgroups.append(parent)
            continue
        killed, problem = remove_stale_cgroup(parent)
        if problem:
            report.problems.append(problem)
        else:
            report.cgroups.append(parent)
            report.killed_pids += killed
    try:
        leases = read_leases()
    except OSError as exc:
        report.problems.append(f"cannot read the deployment leases: {exc.strerror or exc}")
        leases = []
    live = {lease.state_path for lease in leases if owner_alive(*lease.owner)}
    for lease in leases:
        if owner_alive(*lease.owner):
            continue
        for path in _stale_files(lease, live):  # the lease last: kept while its files could not all go
            try:
                if not dry_run:
                    path.unlink()
                report.files.append(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                report.problems.append(f"cannot remove {path}: {exc.strerror or exc}")
                break
    for line in report.lines(dry_run=dry_run):
        _log.info("local platform: %s", line)
    return report
