"""Child processes of the load layer: started pinned to CPUs in their own session, always bounded.

Load generators and the prober run outside the harness's process so that neither Locust's gevent
monkey-patching nor the harness's GIL touches them, and so a runaway one can be killed whole (its
process group). `spawn` pins the child with `os.sched_setaffinity` right after the fork-exec (before
it has imported anything heavy), which keeps the parent free of `preexec_fn` and its thread hazards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from harness.errors import ConfigError, HarnessError

__all__ = ["validate_cpus", "spawn", "stop", "wait_bounded", "python_argv"]

TERM_GRACE_S = 5.0  # SIGTERM -> SIGKILL


def validate_cpus(cpus: Iterable[int] | None, field: str = "cpus") -> tuple[int, ...] | None:
    """Return ``cpus`` as a sorted tuple of CPU ids this process may use (None: no pinning).

    Raises ConfigError naming ``field`` for an empty set or a CPU outside this process's affinity.
    """
    if cpus is None:
        return None
    chosen = tuple(sorted({int(c) for c in cpus}))
    if not chosen:
        raise ConfigError(field, list(chosen), "an empty CPU set; leave it unset for no pinning")
    allowed = os.sched_getaffinity(0)
    outside = [c for c in chosen if c not in allowed]
    if outside:
        raise ConfigError(field, list(chosen), f"CPU {outside[0]} is not available here (usable: {sorted(allowed)})")
    return chosen


def python_argv(module: str, *args: str) -> list[str]:
    """Return the argv that runs ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def spawn(
    argv: Sequence[str],
    *,
    cpus: Iterable[int] | None = None,
    env: Mapping[str, str] | None = None,
    log_path: str | Path | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen:
    """Start ``argv`` in a new session, pinned to ``cpus``; return the Popen.

    stdout and stderr go to ``log_path`` (appended) or are discarded. Raises HarnessError when the
    program cannot be started, ConfigError for bad ``cpus``.
    """
    pinned = validate_cpus(cpus)
    full_env = dict(os.environ)
    full_env.update(env or {})
    log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(argv), env=full_env, cwd=cwd, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as exc:
        raise HarnessError(f"cannot start {argv[0]!r}: {exc}") from exc
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    if pinned is not None:
        try:
            os.sched_setaffinity(proc.pid, pinned)
        except OSError:  # the child died at once; its exit status tells the caller why
            pass
    return proc


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session: this reaches its children too
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def wait_bounded(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """Return the exit code once ``proc`` exits within ``timeout_s``, else None (still running)."""
    try:
        return proc.wait(timeout=max(timeout_s, 0.0))
    except subprocess.TimeoutExpired:
        return None


def stop(proc: subprocess.Popen, *, grace_s: float = TERM_GRACE_S, first_signal: int = signal.SIGTERM) -> int:
    """Stop ``proc`` and its process group: ``first_signal``, then SIGKILL after ``grace_s``; return the exit code.

    Safe to call on an exited process (it only reaps it and clears the group).
    """
    if proc.poll() is None:
        _signal_group(proc, first_signal)
        code = wait_bounded(proc, grace_s)
        if code is None:
            _signal_group(proc, signal.SIGKILL)
            code = proc.wait()
    else:
        code = proc.returncode
    # a grandchild could outlive its leader; the group id is the leader's pid
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.02)
    return code
