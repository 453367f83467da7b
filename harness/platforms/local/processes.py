"""Starting and stopping child processes so that none can outlive the harness.

Every process the harness starts goes through `spawn` (the load and sweep layers' through
`harness.load.child_process.spawn`, which adds interrupt safety). Every child gets its own process
group, joins its cgroup before it execs (so all of its memory is charged there), and asks the kernel
for SIGKILL when its parent thread dies (PR_SET_PDEATHSIG): if the harness is killed outright, its
replicas, balancer and load generators die with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["spawn", "child_setup", "terminate", "free_port", "port_is_free", "exit_code_of", "signal_name"]

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL:
    try:  # glibc by its soname first: find_library would start ldconfig, a child process, on every import
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_prctl = _load_libc().prctl  # resolved before fork: the child only calls it


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether ``port`` can be bound on ``host`` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def child_setup(
    parent_pid: int, procs_files: Sequence[str], rlimit_as: int | None, cpus: Sequence[int] | None
) -> Callable[[], None]:
    """Return the function a child runs between fork and exec: parent-death signal, cgroups, limits, pinning.

    The child asks for SIGKILL when the thread that forked it dies and exits at once if
    ``parent_pid`` is already gone; then it writes its pid into ``procs_files`` (cgroup.procs), sets
    RLIMIT_AS to ``rlimit_as`` and its affinity to ``cpus`` where given.
    """
    procs = [os.fsencode(p) for p in procs_files]

    def setup() -> None:  # runs in the child between fork and exec: no locks, little allocation
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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


def spawn(
    command: Sequence[str],
    *,
    log_path: Path | None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    procs_files: Sequence[str] = (),
    rlimit_as: int | None = None,
    cpus: Sequence[int] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
    stderr: int | None = None,
    new_session: bool = False,
) -> subprocess.Popen:
    """Start ``command`` tied to the calling thread's life (`child_setup`); return the Popen.

    The harness's one place that starts a process. The child leads its own process group (in the
    caller's session, or a new one with ``new_session``), so it and its helpers can be signalled
    whole. Output goes to ``log_path`` (appended; discarded for None) unless ``stdout`` or
    ``stderr`` say otherwise (e.g. subprocess.PIPE). The child is SIGKILLed when the calling thread
    ends: call it from a thread that outlives the child. Raises OSError if the command cannot be
    started, SubprocessError if the child setup failed.
    """
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") if log_path is not None else contextlib.nullcontext(subprocess.DEVNULL) as log:
        return subprocess.Popen(
            list(command),
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=log if stderr is None else stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            process_group=None if new_session else 0,
            start_new_session=new_session,
            close_fds=True,
            preexec_fn=child_setup(os.getpid(), procs_files, rlimit_as, cpus),
        )


def signal_name(number: int) -> str:
    """Return "SIGKILL" for 9, or "signal N" for an unknown number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_code_of(returncode: int) -> int:
    """Return a container-style exit code: 128+N for a process killed by signal N, else its status."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def terminate(proc: subprocess.Popen, grace_period_s: float, *, poll_s: float = 0.02) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace_period_s``; return the Popen returncode.

    Blocking; use it from a thread (the supervisor uses its own asynchronous variant).
    """
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_period_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(poll_s)
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    else:
        _signal_group(proc, signal.SIGKILL)  # helpers the process left behind in its group
    return proc.returncode
