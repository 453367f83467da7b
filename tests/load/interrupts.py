"""Test helpers: deliver SIGINT at the worst instant of a child's start, and wait for processes to go.

`interrupt_after_fork` makes every `subprocess.Popen` deliver SIGINT right after the child exists and
before the call returns: the instant a Ctrl-C can orphan a child whose handle was not yet recorded.
`sigint_raises` turns SIGINT into `Interrupt` (a KeyboardInterrupt, as the chaos run's handler raises)
for one test, so a mistake cannot end the whole pytest session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


class Interrupt(KeyboardInterrupt):
    """What SIGINT raises during a test using `sigint_raises`."""


def is_gone(pid: int, timeout_s: float = 20.0) -> bool:
    """Return True once ``pid`` no longer runs (exited or a zombie) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def kill_quietly(pid: int) -> None:
    """SIGKILL ``pid``'s process group and ``pid`` if still there (a test's cleanup after a failure)."""
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def sigint_raises():
    """SIGINT raises `Interrupt` in the main thread for the duration of the test."""

    def handler(signum, _frame):
        raise Interrupt(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def interrupt_after_fork(monkeypatch, sigint_raises):
    """Deliver SIGINT inside every Popen call of this interpreter once its child runs; yield the
    children's pids (killed afterwards). Other programs (ctypes runs ldconfig on import) are left alone."""
    import harness.processes  # noqa: F401  (imported by the first spawn: its ldconfig run is no child of ours)

    pids: list[int] = []
    real_popen = subprocess.Popen

    def popen(args, *rest, **kwargs):
        proc = real_popen(args, *rest, **kwargs)
        if args[0] == sys.executable:
            pids.append(proc.pid)
            signal.raise_signal(signal.SIGINT)  # its handler runs now, before this call returns
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    try:
        yield pids
    finally:
        monkeypatch.undo()
        for pid in pids:
            kill_quietly(pid)
