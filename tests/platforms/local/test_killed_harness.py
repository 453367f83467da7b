"""SIGKILL of the harness leaves nothing behind.

`harness run tiny`, `harness sweep` and `harness chaos run` are each killed outright once their
deployment is up (`harness sweep` also while its accuracy child runs): every process they started
dies within seconds (the parent-death signal), and `harness cleanup` removes the cgroups and the
state file the kill left (no teardown ran), touching nothing of the pytest process's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness.platforms.local.cgroups import owned_cgroup_dirs

from ...chaos.helpers import ROOT, assert_nothing_left

pytestmark = [pytest.mark.slow, pytest.mark.cgroups]

GONE_WITHIN_S = 5.0  # a child without the parent-death signal outlived the harness by 6-8 s
READY_TIMEOUT_S = 120.0
SWEEP = ["sweep", "--profile", "smoke", "--precisions", "fp32", "--batch-sizes", "8", "--load-levels", "20",
         "--window-s", "1", "--warmup-s", "0.5", "--min-windows", "2", "--max-windows", "2", "--point-budget-s", "12"]
COMMANDS = {
    "run": ["run", "tiny"],
    "sweep": [*SWEEP, "--no-accuracy"],
    "chaos run": ["chaos", "run", "experiments/pod-kill.json", "--topology", "single", "--profile", "smoke"],
}


def _deployed(out: Path, _harness: psutil.Process) -> Path | None:
    """Return the state file of a deployment under ``out`` whose balancer and replicas all run, Ready."""
    for path in out.glob("**/state.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state["balancer"]["pid"] and state["replicas"] and all(r["ready"] and r["pid"] for r in state["replicas"]):
            return path
    return None


def _accuracy_running(_out: Path, harness: psutil.Process) -> bool:
    return any("harness.sweep.accuracy" in " ".join(_cmdline(p)) for p in _descendants(harness))


def _descendants(harness: psutil.Process) -> list[psutil.Process]:
    try:
        return harness.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_when(tmp_path: Path, args: list[str], ready: Callable[[Path, psutil.Process], object]) -> dict:
    """Start ``harness ARGS --out DIR`` in its own session, SIGKILL it once ``ready``; return what was seen."""
    out, log_path = tmp_path / "run", tmp_path / "harness.log"
    env = dict(os.environ, HARNESS_RUNTIME_DIR=str(tmp_path / "runtime"))  # its leases, apart from other runs'
    with open(log_path, "w") as log:
        harness = subprocess.Popen([sys.executable, "-m", "harness", *args, "--out", str(out)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        process = psutil.Process(harness.pid)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (found := ready(out, process)):
            assert harness.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        descendants = _descendants(process)
        commands = [" ".join(_cmdline(p)[1:4]) or str(p.pid) for p in descendants]
        killed = time.monotonic()
        harness.kill()  # no teardown runs: the kernel's parent-death signal must end every child
        harness.wait(10)
        while any(_running(p) for p in descendants) and time.monotonic() < killed + GONE_WITHIN_S:
            time.sleep(0.02)
        gone_s = time.monotonic() - killed
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
    left = [" ".join(_cmdline(p)) for p in descendants if _running(p)]
    for process in descendants:
        if _running(process):
            process.kill()
    return {"pid": harness.pid, "out": out, "env": env, "state_file": found if isinstance(found, Path) else None,
            "descendants": commands, "left": left,
            "gone_s": gone_s}


def _cleanup(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "cleanup"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("command", COMMANDS)
def test_sigkill_once_deployed_leaves_no_process_and_cleanup_no_cgroup(tmp_path, command, cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here: the cgroup half of this test cannot run")
    seen = _kill_when(tmp_path, COMMANDS[command], _deployed)
    mine = owned_cgroup_dirs(os.getpid())

    assert len(seen["descendants"]) >= 2, seen  # the balancer and a replica at least
    assert not seen["left"], f"processes outlived the harness by {GONE_WITHIN_S:g} s: {seen['left']}"
    # what no teardown removed (a deployment starting elsewhere on the machine may sweep the cgroups first)
    left_cgroups = owned_cgroup_dirs(seen["pid"], everywhere=True)
    assert seen["state_file"].exists()

    cleanup = _cleanup(seen["env"])
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"removed stale file {seen['state_file']}" in cleanup.stdout
    assert owned_cgroup_dirs(seen["pid"], everywhere=True) == []
    assert not seen["state_file"].exists() and not list((tmp_path / "runtime" / "deployments").iterdir())
    assert owned_cgroup_dirs(os.getpid()) == mine  # a running harness's (this process's) are left alone
    assert_nothing_left(seen["out"], owner_pid=seen["pid"])
    print(f"\n{command}: {len(seen['descendants'])} descendants {seen['descendants']}, {len(seen['left'])} left, "
          f"gone in {seen['gone_s']:.2f} s; cgroups {len(left_cgroups)} before cleanup, 0 after")


@pytest.mark.timeout(240)
def test_sigkill_while_the_sweep_measures_accuracy_takes_its_child_along(tmp_path, cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here (the sweep's tests run with its cgroups)")
    seen = _kill_when(tmp_path, SWEEP, _accuracy_running)

    assert any("harness.sweep.accuracy" in d for d in seen["descendants"]), seen
    assert not seen["left"], f"processes outlived the harness by {GONE_WITHIN_S:g} s: {seen['left']}"
    assert owned_cgroup_dirs(seen["pid"], everywhere=True) == []  # killed before it deployed: no cgroup yet
    print(f"\nsweep (accuracy): {seen['descendants']}, {len(seen['left'])} left, gone in {seen['gone_s']:.2f} s")
