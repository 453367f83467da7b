"""The harness's one place that starts and stops a process: pinned, in its own session, never orphaned.

Every process the harness starts (replicas, the front balancer, load generators, the prober, the
benchmarks' children) is started by `spawn` and stopped by `stop` (the local platform's asynchronous
supervisor signals with `signal_group`). What each child gets:

- **its own session**: it leads a new session and process group, so `stop` reaches it and whatever it
  started, and a Ctrl-C at the terminal reaches the harness alone, which tears down in order;
- **a parent-death signal**: it asks the kernel (``prctl(PR_SET_PDEATHSIG)``, Linux) for SIGKILL when the
  thread that started it dies, and exits at once if the harness is already gone, so a harness killed
  outright takes its children along. Start children from a thread that outlives them (the main
  thread; the local platform's supervisor thread for replicas). Elsewhere than Linux there is no such
  signal, and only `stop` ends a child;
- **pinning**: with ``cpus`` its affinity is set before it execs, so every thread it starts keeps it
  (`harness.cpus.plan_cpus` decides the sets); with ``procs_files`` it joins its cgroups first, so all
  of its memory is charged there;
- **interrupt safety**: SIGINT and SIGTERM are held off while it starts (`harness.signals.interrupts_held`);
  one that arrived meanwhile kills the child, then is raised, so no child is left that nobody holds.
  A caller that keeps the handle for a later teardown stores it inside an `interrupts_held` block of
  its own instead;
- **a bounded end**: `stop` sends SIGTERM to the group, SIGKILL after a grace period, and waits a
  bounded time; then it clears what the child left in its group.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import ConfigError, HarnessError
from harness.signals import interrupts_held

__all__ = ["TERM_GRACE_S", "KILL_WAIT_S", "can_pin", "validate_cpus", "python_argv", "spawn", "child_setup",
           "signal_group", "signal_leader", "wait_bounded", "stop", "exit_code_of", "signal_name", "log_tail"]

TERM_GRACE_S = 5.0  # SIGTERM -> SIGKILL
KILL_WAIT_S = 10.0  # how long a SIGKILLed child may take to be reaped (a process in the kernel's hands)
GROUP_CLEAR_S = 1.0  # how long `stop` keeps killing what a child left in its process group
LOG_TAIL_CHARS = 2000  # how much of a failed child's log an error quotes
_PR_SET_PDEATHSIG = 1

Stream = int | IO[Any] | None


def _load_prctl() -> Callable[..., int] | None:
    """Return libc's prctl, resolved before any fork (the child only calls it); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # glibc by its soname first: find_library would start ldconfig, a child process, on every import
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        except OSError:
            return None
    return getattr(libc, "prctl", None)


_prctl = _load_prctl()


def can_pin() -> bool:
    """Return whether this platform can pin a process to CPUs (Linux's sched_setaffinity)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def validate_cpus(cpus: Iterable[int] | None, field: str = "cpus") -> tuple[int, ...] | None:
    """Return ``cpus`` as a sorted tuple of CPU ids this process may use (None: no pinning).

    Raises ConfigError naming ``field`` for an empty set, a CPU outside this process's affinity, or
    any set where the platform cannot pin.
    """
    if cpus is None:
        return None
    chosen = tuple(sorted({int(c) for c in cpus}))
    if not chosen:
        raise ConfigError(field, list(chosen), "an empty CPU set; leave it unset for no pinning")
    if not can_pin():
        raise ConfigError(field, list(chosen), f"CPU pinning is not available on {sys.platform}; leave it unset")
    allowed = os.sched_getaffinity(0)
    outside = [c for c in chosen if c not in allowed]
    if outside:
        raise ConfigError(field, list(chosen), f"CPU {outside[0]} is not available here (usable: {sorted(allowed)})")
    return chosen


def python_argv(module: str, *args: str) -> list[str]:
    """Return the argv that runs ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_setup(parent_pid: int, procs_files: Sequence[str], rlimit_as: int | None,
                cpus: Sequence[int] | None) -> Callable[[], None]:
    """Return the function a child runs between fork and exec: parent-death signal, cgroups, limits, pinning.

    The child asks for SIGKILL when the thread that forked it dies and exits at once if
    ``parent_pid`` is already gone; then it writes its pid into ``procs_files`` (cgroup.procs), sets
    RLIMIT_AS to ``rlimit_as`` and its affinity to ``cpus`` where given.
    """
    procs = [os.fsencode(p) for p in procs_files]
    prctl = _prctl

    def setup() -> None:  # runs in the child between fork and exec: no locks, little allocation
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        pid = str(os.getpid()).encode()
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def _child_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return full


def spawn(
    argv: Sequence[str],
    *,
    cpus: Iterable[int] | None = None,
    env: Mapping[str, str | None] | None = None,
    log_path: str | Path | None = None,
    cwd: str | Path | None = None,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = None,
    stderr: Stream = None,
    text: bool = False,
    procs_files: Sequence[str] = (),
    rlimit_as: int | None = None,
) -> subprocess.Popen:
    """Start ``argv`` with the guarantees of this module (see its docstring); return the Popen.

    ``env``: variables set on top of this process's environment (a None value unsets one). stdout
    and stderr go to ``log_path`` (appended) or are discarded, unless ``stdout`` / ``stderr`` say
    otherwise (subprocess.PIPE: read them, or a file). ``procs_files`` and ``rlimit_as``: the cgroups
    it joins and its address-space limit (`child_setup`). The child is SIGKILLed when the calling
    thread ends. Raises HarnessError when the program cannot be started or its setup failed,
    ConfigError for bad ``cpus``; an interrupt that arrives while it starts kills it, then is raised.
    """
    pinned = validate_cpus(cpus)
    log = Path(log_path) if log_path is not None else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        with interrupts_held(), open(log, "ab") if log is not None else contextlib.nullcontext(subprocess.DEVNULL) as out:
            proc = subprocess.Popen(
                list(argv), stdin=stdin, stdout=out if stdout is None else stdout,
                stderr=out if stderr is None else stderr, env=_child_env(env), cwd=cwd, text=text,
                start_new_session=True, close_fds=True,
                preexec_fn=child_setup(os.getpid(), procs_files, rlimit_as, pinned),
            )
        return proc
    except BaseException as exc:
        if proc is not None:  # an interrupt while it started: nobody holds the handle, so stop it here
            with interrupts_held():
                stop(proc, grace_s=0, first_signal=signal.SIGKILL)
        if isinstance(exc, (OSError, subprocess.SubprocessError)):  # SubprocessError: the child setup failed
            raise HarnessError(f"cannot start {argv[0]!r}: {exc}") from exc
        raise


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to ``proc``'s process group (it leads its own), or to ``proc`` alone when the group is gone."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def signal_leader(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads (a replica `spawn` started: its workers too), or to
    ``pid`` alone when it leads no group of its own. Raises ProcessLookupError when the process is gone."""
    if os.getpgid(pid) == pid:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)


def wait_bounded(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """Return the exit code once ``proc`` exits within ``timeout_s``, else None (still running)."""
    try:
        return proc.wait(timeout=max(timeout_s, 0.0))
    except subprocess.TimeoutExpired:
        return None


def stop(proc: subprocess.Popen, *, grace_s: float = TERM_GRACE_S, first_signal: int = signal.SIGTERM) -> int:
    """Stop ``proc`` and its process group: ``first_signal``, then SIGKILL after ``grace_s``; return the
    Popen returncode (negative: the signal that ended it).

    Safe to call on an exited process (it only reaps it and clears the group). Raises HarnessError if
    the child is still not reaped `KILL_WAIT_S` after SIGKILL.
    """
    if proc.poll() is None:
        signal_group(proc, first_signal)
        code = wait_bounded(proc, grace_s)
        if code is None:
            signal_group(proc, signal.SIGKILL)
            code = wait_bounded(proc, KILL_WAIT_S)
            if code is None:
                raise HarnessError(f"pid {proc.pid} ({proc.args[0] if proc.args else '?'}) did not end within "
                                   f"{KILL_WAIT_S:g} s of SIGKILL")
    else:
        code = proc.returncode
    # a grandchild could outlive its leader; the group id is the leader's pid
    deadline = time.monotonic() + GROUP_CLEAR_S
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.02)
    return code


def signal_name(number: int) -> str:
    """Return "SIGKILL" for 9, or "signal N" for an unknown number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_code_of(returncode: int) -> int:
    """Return a container-style exit code: 128+N for a process killed by signal N, else its status."""
    return 128 - returncode if returncode < 0 else returncode


def log_tail(log_path: str | Path, chars: int = LOG_TAIL_CHARS) -> str:
    """Return the last ``chars`` characters of a child's log ("" when there is none)."""
    try:
        return Path(log_path).read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""
