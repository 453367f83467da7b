"""Helpers shared by the chaos tests that start real deployments: bounded subprocesses, leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Return live processes (not this one) whose command line mentions ``text`` (a run's directory)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(text in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def replica_pids(state_file: Path) -> list[int]:
    """Return every pid a deployment's state file has named (the last known ones)."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return []
    return [row["pid"] for row in state.get("replicas", []) if row.get("pid")]


def assert_nothing_left(run_dir: Path, owner_pid: int | None = None) -> None:
    """Assert no process, replica or cgroup of the run in ``run_dir`` is still there."""
    from harness.platforms.local.cgroups import owned_cgroup_dirs

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [pid for pid in replica_pids(run_dir / "deployment" / "state.json") if psutil.pid_exists(pid)]
        others = processes_mentioning(str(run_dir))
        if not alive and not others:
            break
        time.sleep(0.2)
    assert not alive, f"replica processes left: {alive}"
    assert not others, f"processes left: {[p.info['cmdline'] for p in others]}"
    if owner_pid is not None:
        assert not owned_cgroup_dirs(owner_pid), f"cgroups left: {owned_cgroup_dirs(owner_pid)}"


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a test's subprocess group: SIGINT, then SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
