"""An OOM kill through the memory cgroup: a fault that needs nothing from the server.

`squeeze_memory` lowers one replica's memory limit (cgroup v1 ``memory.limit_in_bytes``, v2
``memory.max``) to what the replica uses now, so that the next memory its process needs (a request's
buffers, a thread's stack) finds none and the kernel's OOM killer ends it, as it ends a container
that outgrew its ``limits.memory``. The limit it found is put back the moment the process is gone (it
is polled every `POLL_S`), before the restarted replica grows, and on every other way out. Where the
kernel will not set a limit below the memory in use (cgroup v1 answers EBUSY when it cannot reclaim
enough), the limit is set just above it and lowered again while the process lives. Needs
``limits.memory`` enforced by a cgroup (``memory_enforcement`` in the state file). A Chaos Toolkit
activity (python provider), light to import like `harness.chaos.activities`.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import failing, live_pid, read_state_file, remember, select

__all__ = ["POLL_S", "squeeze_memory", "memory_files"]

POLL_S = 0.01
_RETRY_S = 0.25  # while the process lives, the limit follows its usage down this often
_STEP_BYTES = 64 * 1024  # above the usage, where the kernel refuses the usage itself


def memory_files(row: dict[str, Any]) -> tuple[Path, Path]:
    """Return (limit file, usage file) of a replica's memory cgroup; raise ActivityFailed when it has none."""
    for directory in str(row.get("cgroup") or "").split(","):
        base = Path(directory.strip())
        for limit, usage in (("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            if directory.strip() and (base / limit).exists() and (base / usage).exists():
                return base / limit, base / usage
    raise ActivityFailed(f"replica {row.get('name')} has no memory cgroup ({row.get('cgroup')}); set resources.limits.memory")


def _write_limit(path: Path, value: int) -> bool:
    """Write ``value`` as the limit; return False where the kernel refuses it as below what it can reclaim."""
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(str(value))
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.EINVAL):
            return False
        raise


def _squeeze(limit: Path, usage: Path) -> None:
    """Set the limit to the usage now, else the least above it the kernel accepts."""
    used = int(usage.read_text())
    for extra in (0, _STEP_BYTES, 4 * _STEP_BYTES, 16 * _STEP_BYTES):
        if _write_limit(limit, used + extra):
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


@failing
def squeeze_memory(state_file: str, replica: str = "first-ready", timeout_s: float = 30.0) -> dict[str, Any]:
    """OOM-kill one replica through its memory cgroup; return when its process is gone, the limit restored.

    Fails when the deployment does not enforce limits.memory with a cgroup, or when the process still
    lives after ``timeout_s`` (a server that needs no memory while it idles: put load on it).
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < float(timeout_s) <= 600:
        raise ActivityFailed(f"timeout_s={timeout_s!r}: must be a number of seconds above 0 and at most 600")
    state = read_state_file(state_file)
    enforcement = str(state.get("memory_enforcement") or "none")
    if not enforcement.startswith("cgroup"):
        raise ActivityFailed(f"memory_enforcement={enforcement!r}: limits.memory is not enforced by a cgroup here, "
                             f"so there is no kernel OOM kill to cause")
    row = select(state, replica)[0]
    pid = live_pid(row)
    limit, usage = memory_files(row)
    before = limit.read_text().strip()
    at = remember(row, "squeeze_memory")
    deadline = at + float(timeout_s)
    try:
        _squeeze(limit, usage)
        squeezed_at = time.monotonic()
        while _alive(pid):
            if time.time() > deadline:
                raise ActivityFailed(f"replica {row['name']} (pid {pid}) still ran {timeout_s:g} s after its memory "
                                     f"limit was lowered to its usage: it allocated nothing (put load on it)")
            if time.monotonic() - squeezed_at > _RETRY_S:  # what the kernel reclaimed meanwhile is room again
                _squeeze(limit, usage)
                squeezed_at = time.monotonic()
            time.sleep(POLL_S)
    finally:
        try:
            _write_limit(limit, int(before)) if before.isdigit() else limit.write_text(before)
        except FileNotFoundError:
            pass  # the cgroup is gone: the deployment was torn down meanwhile
    return {"replica": row["name"], "pid": pid, "limit_before": before, "time_s": at,
            "killed_after_s": round(time.time() - at, 3)}
