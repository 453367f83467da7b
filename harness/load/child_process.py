"""Child processes of the load layer: started pinned to CPUs in their own session, never orphaned.

Load generators and the prober run outside the harness's process so that neither Locust's gevent
monkey-patching nor the harness's GIL touches them, and so a runaway one can be killed whole (its
process group). Two guarantees keep one from outliving the harness:

- every child asks the kernel for SIGKILL when the thread that started it dies (PR_SET_PDEATHSIG, the
  local platform's child setup, shared: it also pins the child before exec), so a harness killed
  outright takes its children along;
- SIGINT and SIGTERM are held off while a child starts (`interrupts_held`): a KeyboardInterrupt
  raised between the fork and the moment the caller records the Popen would leave a child nobody
  stops. `spawn` kills its child if an interrupt came while it started; a caller that keeps the
  handle for a later teardown wraps the call and the store in `interrupts_held` instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from harness.errors import ConfigError, HarnessError

__all__ = ["validate_cpus", "interrupts_held", "spawn", "stop", "wait_bounded", "python_argv", "log_tail",
           "no_records_error"]

TERM_GRACE_S = 5.0  # SIGTERM -> SIGKILL
LOG_TAIL_CHARS = 2000  # how much of a failed child's log an error quotes
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off for the block, then pass each one that arrived to its handler.

    The handler runs (and may raise) as the block ends, so whatever the block recorded is recorded
    first. Python runs signal handlers only in the main thread; elsewhere nothing can interrupt the
    block and this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    saved: dict[int, Any] = {}
    try:
        for sig in HELD_SIGNALS:
            if signal.getsignal(sig) is not None:  # None: set outside Python, and could not be put back
                saved[sig] = signal.signal(sig, lambda signum, _frame: arrived.append(signum))
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            _deliver(sig, saved[sig])


def _deliver(sig: int, handler: Any) -> None:
    if callable(handler):
        handler(sig, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(sig)  # the default action: the process ends (its children with it)
    # SIG_IGN: dropped, as it would have been


def spawn(
    argv: Sequence[str],
    *,
    cpus: Iterable[int] | None = None,
    env: Mapping[str, str] | None = None,
    log_path: str | Path | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in a new session, pinned to ``cpus``; return the Popen.

    stdout and stderr go to ``log_path`` (appended) or are discarded, unless ``stdout`` / ``stderr``
    say otherwise (subprocess.PIPE: read them with ``communicate``). The child is SIGKILLed when the
    calling thread ends, so call this from one that outlives it (the main thread). An interrupt that
    arrives while the child starts kills the child, then is raised; to keep the child for a teardown
    instead, store the result inside `interrupts_held`. Raises HarnessError when the program cannot be
    started, ConfigError for bad ``cpus``.
    """
    # the one spawner (PR_SET_PDEATHSIG, pinning), imported here: the children that import this module
    # (prober, rate worker) need none of the platform
    from harness.platforms.local import processes

    pinned = validate_cpus(cpus)
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = None
    try:
        with interrupts_held():
            proc = processes.spawn(argv, log_path=Path(log_path) if log_path is not None else None, env=full_env,
                                   cwd=cwd, cpus=pinned, stdin=stdin, stdout=stdout, stderr=stderr, new_session=True)
        return proc
    except BaseException as exc:
        if proc is not None:  # an interrupt while it started: nobody holds the handle, so stop it here
            with interrupts_held():
                stop(proc, grace_s=0, first_signal=signal.SIGKILL)
        if isinstance(exc, (OSError, subprocess.SubprocessError)):  # SubprocessError: the child setup failed
            raise HarnessError(f"cannot start {argv[0]!r}: {exc}") from exc
        raise


def log_tail(log_path: str | Path, chars: int = LOG_TAIL_CHARS) -> str:
    """Return the last ``chars`` characters of a child's log ("" when there is none)."""
    try:
        return Path(log_path).read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def no_records_error(generator: str, requests_path: Path, exit_code: int | None, log_path: Path) -> HarnessError:
    """Return the error of a load generator that recorded no request: a failed run, never an empty success.

    Its first line names the records file (absolute: the generator was handed that path) and the
    generator's exit code; the log's tail follows on the next lines.
    """
    state = "is empty" if requests_path.exists() else "was not written"
    return HarnessError(f"{generator} recorded no request: {requests_path} {state} (exit code {exit_code}); "
                        f"its log {log_path} ends:\n{log_tail(log_path)}")


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
