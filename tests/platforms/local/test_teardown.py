"""Teardown leaves nothing behind (after SIGINT to `harness up`, an exception, a replica ignoring
SIGTERM), and what the deployment records: state file, limits and their enforcement."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from harness.errors import DeploymentError
from harness.platforms import deploy, read_replica, read_state
from harness.platforms.local.cgroups import cgroup_base, owned_cgroup_dirs
from harness.platforms.local.cleanup import sweep_stale
from harness.service.client import inject_fault


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


@pytest.mark.slow
def test_sigint_to_harness_up_tears_everything_down(tmp_path, fast_spec_data):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(fast_spec_data))
    state_file = tmp_path / "state.json"
    command = [sys.executable, "-m", "harness", "up", "--topology", "multi-active", "--spec", str(spec_file),
               "--state-file", str(state_file), "--workdir", str(tmp_path / "work"), "--for-s", "120"]
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 90
        while not any(line.startswith("ready ") for line in lines):
            assert time.monotonic() < deadline and up.poll() is None, lines
            lines.append(up.stdout.readline())
        assert lines[0].startswith("endpoint http://127.0.0.1:")
        state = read_state(state_file)
        children = psutil.Process(up.pid).children(recursive=True)
        pids = {c.pid for c in children}
        ports = {r["port"] for r in state["replicas"]} | {state["balancer"]["port"]}
        cgroups = [Path(p) for r in state["replicas"] for p in r["cgroup"].split(",")]
        assert {r["pid"] for r in state["replicas"]} | {state["balancer"]["pid"]} <= pids
        assert ports <= _listening_ports() and all(c.exists() for c in cgroups)

        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, err
    assert "down" in out.split()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not ports & _listening_ports()
    assert not [c for c in cgroups if c.exists() or c.parent.exists()]
    final = read_state(state_file)
    assert [r["state"] for r in final["replicas"]] == ["Terminated", "Terminated"]


def test_bad_spec_exits_2_naming_the_field(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"probes": {"liveness": {"path": "/", "periodSeconds": -1}}}))
    result = subprocess.run([sys.executable, "-m", "harness", "up", "--spec", str(spec_file), "--for-s", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "probes.liveness.periodSeconds" in result.stderr and "-1" in result.stderr


@pytest.mark.slow
def test_a_replica_ignoring_sigterm_is_sigkilled_after_the_grace_period(deploy_local, make_spec):
    deployment = deploy_local(make_spec(terminationGracePeriodSeconds=1))
    deployment.wait_ready(timeout_s=90)
    # a hung event loop cannot act on SIGTERM: the service stays up until the platform SIGKILLs it
    inject_fault(deployment.replica("reference-0").url, "hang", deployment.fault_token, {"duration_s": 60})
    started = time.monotonic()
    deployment.close()
    closed_s = time.monotonic() - started

    exited = [e for e in deployment.events() if e.type == "Exited"]
    assert [(e.exit_code, e.extra["killed_by"]) for e in exited] == [(137, "teardown")]
    assert 1.0 <= closed_s < 10.0
    assert deployment.events()[-1].type == "Deleted"


def test_an_exception_inside_the_deployment_still_tears_it_down(tmp_path, stub_spec, stub_command, leftovers):
    with pytest.raises(RuntimeError):
        with deploy(stub_spec(topology="multi-active", replicas=3), workdir=tmp_path, command=stub_command) as deployment:
            deployment.wait_ready(timeout_s=30)
            raise RuntimeError("the caller failed")
    assert leftovers(deployment) == []
    assert [r.state for r in deployment.replicas()] == ["Terminated"] * 3


def test_state_file_lists_replicas_for_outside_tools_and_is_private(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(topology="multi-active", replicas=2), command=stub_command)
    deployment.wait_ready(timeout_s=30)
    state = read_state(deployment.state_path)

    assert stat.S_IMODE(os.stat(deployment.state_path).st_mode) == 0o600  # it holds the fault token
    assert {k: state[k] for k in ("name", "platform", "topology", "endpoint", "fault_token")} == {
        "name": "reference", "platform": "local", "topology": "multi-active", "endpoint": deployment.endpoint,
        "fault_token": deployment.fault_token}
    replica = read_replica(deployment.state_path, "reference-1")
    assert replica == deployment.replica("reference-1")
    assert replica.ready and psutil.Process(replica.pid).is_running()
    assert replica.url == f"http://127.0.0.1:{replica.port}"
    with pytest.raises(DeploymentError, match="reference-0, reference-1"):
        read_replica(deployment.state_path, "reference-7")


def test_limits_without_writable_cgroups_fall_back_to_rlimit_and_say_so(deploy_local, stub_spec, stub_command):
    deployment = deploy_local(stub_spec(resources={"limits.memory": "1Gi", "limits.cpu": "500m"}),
                              command=stub_command, use_cgroups=False)
    deployment.wait_ready(timeout_s=30)

    assert (deployment.memory_enforcement, deployment.cpu_enforcement) == ("rlimit", "none")
    fallbacks = [e for e in deployment.events() if e.type == "EnforcementFallback"]
    assert len(fallbacks) == 2 and "RLIMIT_AS" in fallbacks[0].message
    assert psutil.Process(deployment.replica("reference-0").pid).rlimit(psutil.RLIMIT_AS) == (2**30, 2**30)
    assert read_state(deployment.state_path)["memory_enforcement"] == "rlimit"


@pytest.mark.cgroups
def test_memory_and_cpu_limits_are_written_to_the_replica_cgroups(deploy_local, stub_spec, stub_command,
                                                                   cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here")
    deployment = deploy_local(stub_spec(resources={"limits.memory": "768Mi", "limits.cpu": "500m"}),
                              command=stub_command)
    deployment.wait_ready(timeout_s=30)
    replica = deployment.replica("reference-0")
    dirs = [Path(p) for p in replica.cgroup.split(",")]

    assert all(str(replica.pid) in (d / "cgroup.procs").read_text().split() for d in dirs)
    if deployment.memory_enforcement == "cgroup-v1":
        assert (dirs[0] / "memory.limit_in_bytes").read_text().strip() == str(768 * 2**20)
        assert (dirs[-1] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    else:
        assert (dirs[0] / "memory.max").read_text().strip() == str(768 * 2**20)
        assert (dirs[0] / "cpu.max").read_text().split() == ["50000", "100000"]
    assert deployment.cpu_enforcement == deployment.memory_enforcement


@pytest.mark.cgroups
def test_stale_cgroups_of_dead_harness_processes_are_swept(cgroups_writable):
    if not cgroups_writable:
        pytest.skip("memory cgroups are not writable here")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = owned_cgroup_dirs(os.getpid())
    stale = cgroup_base("memory") / f"harness-{dead.pid}-stale-000000"
    (stale / "reference-0").mkdir(parents=True)
    try:
        removed = sweep_stale().cgroups
        assert stale in removed and not stale.exists()
        assert owned_cgroup_dirs(os.getpid()) == mine  # those of a live process are left alone
    finally:
        if stale.exists():
            (stale / "reference-0").rmdir()
            stale.rmdir()


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from harness.config import ServiceSpec
from harness.platforms import deploy
from harness.validation import validate_model
spec = validate_model(ServiceSpec, {"topology": "multi-active", "probes": {
    "liveness": {"path": "/"}, "readiness": {"path": "/", "periodSeconds": 0.2}}})
deployment = deploy(spec, workdir=Path(sys.argv[1]), command=sys.argv[2:])
deployment.wait_ready(timeout_s=30)
print("ready", flush=True)
time.sleep(120)
"""


def test_replicas_die_with_a_harness_that_is_sigkilled_and_its_cgroups_are_swept(tmp_path, stub_command):
    workdir = tmp_path / "work"
    harness = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, str(workdir), *stub_command],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout.readline().strip() == "ready"
        state = read_state(workdir / "state.json")
        pids = [r["pid"] for r in state["replicas"]] + [state["balancer"]["pid"]]
        cgroups = [Path(p) for r in state["replicas"] if r["cgroup"] for p in r["cgroup"].split(",")]
        harness.kill()  # no teardown runs: the kernel's parent-death signal must end the children
        harness.wait(timeout=10)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        harness.stdout.close()

    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "replicas outlived the harness"
        time.sleep(0.05)
    sweep_stale()  # what the next deployment does at start
    assert not [c for c in cgroups if c.exists() or c.parent.exists()]
