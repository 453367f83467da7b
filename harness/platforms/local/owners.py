"""Who owns a harness resource left on the machine (a cgroup, a lease): a pid and that process's start time.

A pid alone cannot say whether its owner still runs: after the owner dies the kernel hands the number
to a new process. The start time (clock ticks since boot, from ``/proc/<pid>/stat``: exact, and
unaffected by changes of the wall clock) can: the owner is alive while a process with that pid and
that start time exists and is not a zombie. An owner tag is ``"<pid>.<start ticks>"``.
"""

from __future__ import annotations

import os
import re

__all__ = ["start_ticks", "owner_tag", "parse_owner", "owner_alive"]

_TAG = re.compile(r"^(\d+)(?:\.(\d+))?$")
_STARTTIME_FIELD = 19  # starttime is field 22 of /proc/<pid>/stat; this index counts from field 3 (state)


def start_ticks(pid: int) -> int | None:
    """Return when process ``pid`` started (clock ticks since boot), None when it is gone or a zombie."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except (OSError, ValueError):
        return None
    fields = text.rpartition(")")[2].split()  # the command name in parentheses may hold spaces
    if len(fields) <= _STARTTIME_FIELD or fields[0] in ("Z", "X"):
        return None
    return int(fields[_STARTTIME_FIELD])


def owner_tag(pid: int | None = None) -> str:
    """Return the owner tag of process ``pid`` (default: this process), ``"<pid>.<start ticks>"``."""
    pid = os.getpid() if pid is None else pid
    ticks = start_ticks(pid)
    return f"{pid}.{ticks}" if ticks is not None else str(pid)


def parse_owner(tag: str) -> tuple[int, int | None] | None:
    """Return ``(pid, start ticks or None)`` of an owner tag, None when ``tag`` is not one."""
    match = _TAG.match(tag)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def owner_alive(pid: int, ticks: int | None) -> bool:
    """Return whether the owner still runs: ``pid`` exists, is no zombie, and (when known) started at ``ticks``."""
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)
