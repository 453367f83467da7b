"""What a killed run leaves is found by its owner (pid and start time) and removed; nothing of a live one is.

Covers `harness.platforms.local.owners`, `.leases`, `.cleanup` and the `harness cleanup` command;
the end-to-end SIGKILL of real commands is in test_killed_harness.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.cli import main
from harness.platforms.local.cgroups import cgroup_base, owned_cgroup_dirs, remove_cgroup_dir
from harness.platforms.local.cleanup import remove_stale_cgroup, sweep_stale
from harness.platforms.local.leases import ENV_RUNTIME_DIR, leases_dir, read_leases, write_lease
from harness.platforms.local.owners import owner_alive, owner_tag, parse_owner, start_ticks

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _dead_owner() -> str:
    """Return the owner tag of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(SLEEPER)
    tag = owner_tag(proc.pid)
    proc.kill()
    proc.wait()
    return tag


@pytest.fixture
def runtime(tmp_path, monkeypatch) -> Path:
    """A runtime dir of the test's own (its leases apart from any other run's)."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv(ENV_RUNTIME_DIR, str(directory))
    return directory


def _plant_lease(owner: str, state_path: Path, harness_pid: int | None = None) -> Path:
    """Write what a deployment of ``owner`` killed outright leaves: its lease and its state file."""
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"platform": "local", "harness_pid": harness_pid or int(owner.split(".")[0]),
                                      "replicas": [{"name": "reference-0", "pid": 1, "state": "Running"}]}))
    lease = leases_dir(create=True) / f"{owner}-{secrets.token_hex(4)}.json"
    lease.write_text(json.dumps({"state_path": str(state_path), "workdir": str(state_path.parent)}))
    return lease


def test_an_owner_is_alive_only_with_its_own_start_time():
    me = os.getpid()
    pid, ticks = parse_owner(owner_tag())
    assert pid == me and ticks == start_ticks(me) and owner_alive(pid, ticks)
    assert not owner_alive(me, ticks + 1)  # the same pid, another process: a reused pid is not the owner
    assert owner_alive(me, None)  # a name without the start time: the pid alone decides
    assert not owner_alive(*parse_owner(_dead_owner()))
    assert parse_owner("reference") is None and parse_owner("12") == (12, None)


def test_a_zombie_owner_is_dead():
    proc = subprocess.Popen(SLEEPER)
    try:
        tag = owner_tag(proc.pid)
        proc.kill()  # not reaped yet: a zombie until wait()
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert start_ticks(proc.pid) is None and not owner_alive(*parse_owner(tag))
    finally:
        proc.wait()


def test_the_state_file_and_lease_of_a_killed_run_are_removed_and_a_live_runs_kept(runtime, tmp_path):
    dead = _dead_owner()
    stale_state = tmp_path / "killed" / "state.json"
    stale_lease = _plant_lease(dead, stale_state)
    half_written = stale_state.parent / ".state.json.k2j4.tmp"  # the kill cut an atomic replace short
    half_written.write_text("{")
    live_state = tmp_path / "live" / "state.json"
    live_lease = _plant_lease(owner_tag(), live_state)
    rewritten = tmp_path / "rewritten" / "state.json"  # the killed run's path, since reused by a later run
    rewritten_lease = _plant_lease(dead, rewritten, harness_pid=os.getpid())

    dry = sweep_stale(dry_run=True)
    assert set(dry.files) == {stale_state, half_written, stale_lease, rewritten_lease}
    assert stale_state.exists() and stale_lease.exists()  # a dry run removes nothing
    report = sweep_stale()

    assert set(report.files) == {stale_state, half_written, stale_lease, rewritten_lease} and not report.problems
    assert not stale_state.exists() and not half_written.exists() and not stale_lease.exists()
    assert live_state.exists() and live_lease.exists()
    assert rewritten.exists()  # it names another run now: not this lease's to remove
    assert [lease.path for lease in read_leases()] == [live_lease]


def test_a_state_file_a_live_deployment_writes_is_kept_whatever_old_lease_names_it(runtime, tmp_path):
    state = tmp_path / "shared" / "state.json"
    old = _plant_lease(_dead_owner(), state)
    _plant_lease(owner_tag(), tmp_path / "shared" / "other.json")
    current = leases_dir() / f"{owner_tag()}-11111111.json"
    current.write_text(json.dumps({"state_path": str(state)}))
    report = sweep_stale()
    assert report.files == [old] and state.exists()


def test_a_runtime_dir_others_can_write_is_not_trusted(runtime, tmp_path):
    (runtime / "deployments").mkdir(parents=True)
    runtime.chmod(0o777)
    assert write_lease(tmp_path / "state.json", tmp_path) is None  # the deployment goes on without one
    report = sweep_stale()
    assert report.problems and str(runtime) in report.problems[0]


def test_a_deployment_sweeps_a_killed_runs_state_file_and_holds_a_lease_while_up(runtime, tmp_path, deploy_local,
                                                                                 stub_spec, stub_command):
    stale_state = tmp_path / "killed" / "state.json"
    _plant_lease(_dead_owner(), stale_state)
    deployment = deploy_local(stub_spec(), command=stub_command)
    assert not stale_state.exists()  # swept as the deployment started
    [lease] = read_leases()
    assert lease.owner == parse_owner(owner_tag()) and lease.state_path == deployment.state_path
    deployment.close()
    assert read_leases() == []


@pytest.mark.cgroups
def test_stale_cgroups_are_removed_by_owner_and_start_time(cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here")
    base = cgroup_base("memory")
    dead = base / f"harness-{_dead_owner()}-stale-000000"
    reused = base / f"harness-{os.getpid()}.1-stale-000000"  # our pid, another start: a reused pid
    mine = base / f"harness-{owner_tag()}-live-000000"
    for directory in (dead, reused, mine):
        (directory / "reference-0").mkdir(parents=True)
    try:
        removed = sweep_stale().cgroups  # (a deployment starting elsewhere may sweep the stale ones first)
        assert not dead.exists() and not reused.exists()
        assert mine not in removed and mine.exists()
        assert mine in owned_cgroup_dirs(os.getpid(), everywhere=True)
    finally:
        for directory in (dead, reused, mine):
            remove_cgroup_dir(directory / "reference-0", 2)
            remove_cgroup_dir(directory, 2)


@pytest.mark.cgroups
def test_a_stale_cgroup_keeps_a_process_with_a_running_parent_and_kills_an_orphan(cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here")
    stale = cgroup_base("memory") / f"harness-{_dead_owner()}-stale-000000"
    replica = stale / "reference-0"
    replica.mkdir(parents=True)
    ours = subprocess.Popen(SLEEPER)  # its parent (this process) runs: it belongs to a live harness
    # an orphan: its parent exits at once, so init adopts it
    spawner = ("import subprocess; print(subprocess.Popen("
               f"{SLEEPER!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    orphan_pid = int(subprocess.run([sys.executable, "-c", spawner], capture_output=True, text=True, timeout=30).stdout)
    try:
        (replica / "cgroup.procs").write_text(str(ours.pid))
        killed, problem = remove_stale_cgroup(stale)
        assert killed == [] and f"its process {ours.pid} has a running parent (pid {os.getpid()})" in problem
        assert ours.poll() is None and replica.exists()

        (cgroup_base("memory") / "cgroup.procs").write_text(str(ours.pid))  # out again
        (replica / "cgroup.procs").write_text(str(orphan_pid))
        killed, problem = remove_stale_cgroup(stale)
        assert killed == [orphan_pid] and problem is None and not stale.exists()
        assert not psutil.pid_exists(orphan_pid) or psutil.Process(orphan_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        ours.kill()
        ours.wait()
        try:
            os.kill(orphan_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        remove_cgroup_dir(replica, 2)
        remove_cgroup_dir(stale, 2)


def test_cleanup_command_reports_what_it_removed_and_exits_3_naming_what_it_could_not(runtime, tmp_path, capsys):
    stale_state = tmp_path / "killed" / "state.json"
    lease = _plant_lease(_dead_owner(), stale_state)
    assert main(["cleanup", "--dry-run"]) == 0
    assert f"would remove stale file {stale_state}" in capsys.readouterr().out and stale_state.exists()
    assert main(["cleanup"]) == 0
    out = capsys.readouterr().out
    assert f"removed stale file {stale_state}" in out and f"removed stale file {lease}" in out
    assert not stale_state.exists()

    runtime.chmod(0o777)  # no longer trusted: the leases cannot be read
    try:
        assert main(["cleanup"]) == 3
    finally:
        runtime.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("harness cleanup: error: 1 stale item(s) could not be removed")
    assert str(runtime) in err[-1]


def test_cleanup_help_names_its_exit_codes():
    result = subprocess.run([sys.executable, "-m", "harness", "cleanup", "--help"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0
    assert "\n  0    nothing stale is left" in result.stdout and "\n  2    bad usage" in result.stdout
    assert "\n  3    something stale could not be removed" in result.stdout
