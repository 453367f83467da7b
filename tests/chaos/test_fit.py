"""Which targets a fault applies to (harness.chaos.fit), the skip of a fault a target cannot take (no
deployment is started), and CPU throttling through a cgroup quota against cgroup files written here."""

from __future__ import annotations

import json
import os
import sys

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.chaos import cpuquota, memlimit, targets
from harness.chaos.experiment import load_experiment
from harness.chaos.fit import target_fit, target_kinds
from harness.chaos.matrix import cell_text, matrix_row
from harness.chaos.presets import get_chaos_preset
from harness.chaos.settings import ChaosRunSettings
from harness.workflows.chaos import ChaosRun
from harness.workflows.context import RunContext

from .helpers import ROOT

EXPERIMENTS = ROOT / "experiments"


@pytest.mark.parametrize("name, kinds", [
    ("pod-kill", ["reference", "command"]),
    ("pod-kill-graceful", ["reference", "command"]),
    ("freeze", ["reference", "command"]),
    ("cpu-throttle", ["reference", "command"]),
    ("oom-squeeze", ["reference", "command"]),  # the memory cgroup's limit, lowered from outside
    ("oom-kill", ["reference"]),  # the service's memory hook allocates past the limit
    ("hang", ["reference"]),
    ("readiness-probe-delay", ["reference"]),
    ("slow-startup", ["reference"]),  # a slow model load is the reference service's own setting
])
def test_the_targets_of_a_shipped_experiment_follow_from_its_activities(name, kinds):
    assert target_kinds(load_experiment(EXPERIMENTS / f"{name}.json"))[0] == kinds


def test_why_a_fault_cannot_run_on_a_target_is_said():
    oom = load_experiment(EXPERIMENTS / "oom-kill.json")
    assert target_fit(oom, "reference") is None
    assert target_fit(oom, "command") == ("skipped on a command target: oom_replica needs the reference service's "
                                          "fault hooks, which a command target does not have")
    kill = load_experiment(EXPERIMENTS / "pod-kill.json")
    assert target_fit(kill, "command") is None
    assert "kill_replica acts on a replica's process" in target_fit(kill, "endpoint")
    assert target_fit(kill, "endpoint").startswith("skipped on an endpoint target")


def _experiment(tmp_path, module, func, **extension):
    document = json.loads((EXPERIMENTS / "pod-kill.json").read_text())
    document["method"][0]["provider"].update({"module": module, "func": func, "arguments": {}})
    document["extensions"][0].update(extension)
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(document))
    return load_experiment(path, validate=False)


def test_an_unknown_activity_needs_the_reference_service_unless_the_experiment_declares_its_targets(tmp_path):
    unknown = _experiment(tmp_path, "my.faults", "unplug")
    assert target_kinds(unknown)[0] == ["reference"]
    assert "my.faults.unplug is not known to work on a command target" in target_fit(unknown, "command")
    declared = _experiment(tmp_path, "my.faults", "unplug", targets=["reference", "endpoint"])
    assert target_kinds(declared)[0] == ["reference", "endpoint"]
    assert target_fit(declared, "endpoint") is None
    assert "extensions[harness].targets" in target_fit(declared, "command")


def test_a_fault_needing_the_service_hooks_is_skipped_on_a_command_target_before_anything_is_deployed(tmp_path):
    spec_data = {"target": {"command": [sys.executable, "server.py", "--port", "{port}"], "workdir": str(tmp_path)}}
    settings = ChaosRunSettings(experiment=load_experiment(EXPERIMENTS / "oom-kill.json"), topology="single",
                                preset=get_chaos_preset("smoke"), spec_data=spec_data)
    result = ChaosRun(settings, RunContext(tmp_path / "out")).execute()
    assert result["outcome"] == "skipped" and result["skipped"] is True
    assert result["reasons"] == [target_fit(settings.experiment, "command")]
    assert result["ttr_s"] is None and result["spec"]["target"]["command"][1] == "server.py"
    assert json.loads((tmp_path / "out" / "result.json").read_text())["outcome"] == "skipped"
    assert not (tmp_path / "out" / "deployment").exists()  # nothing was deployed
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "completed" and "oom_replica needs the reference service's fault hooks" in run["reason"]
    row = matrix_row({"fault": "oom-kill", "topology": "single", **result}, 0.1, False)
    assert cell_text(row).startswith("skipped on a command target: oom_replica")


# --- CPU throttling through the cgroup quota (harness.chaos.cpuquota) --------------------------------


def _cgroup_state(tmp_path, version, enforcement="cgroup-v2"):
    directory = tmp_path / "cg"
    directory.mkdir()
    if version == 2:
        (directory / "cpu.max").write_text("200000 100000\n")
    else:
        (directory / "cpu.cfs_quota_us").write_text("200000\n")
        (directory / "cpu.cfs_period_us").write_text("100000\n")
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"cpu_enforcement": enforcement, "replicas": [
        {"name": "r-0", "pid": 1, "ready": True, "cgroup": str(directory)}]}))
    return str(state), directory / ("cpu.max" if version == 2 else "cpu.cfs_quota_us")


@pytest.mark.parametrize("version, during", [(2, "5000 100000"), (1, "5000")])
def test_throttling_lowers_the_quota_for_the_duration_then_restores_it(tmp_path, monkeypatch, version, during):
    state, quota = _cgroup_state(tmp_path, version)
    seen = []
    monkeypatch.setattr(cpuquota.time, "sleep", lambda s: seen.append((s, quota.read_text())))
    try:
        result = cpuquota.throttle_cpu(state, cpu_share=0.05, duration_s=2.0)
    finally:
        targets.last_injection.clear()
    assert seen == [(2.0, during)]
    assert quota.read_text().split()[0] == "200000"  # the quota it found, back
    assert result["replica"] == "r-0" and result["quota_us"] == 5000 and result["period_us"] == 100000


def test_throttling_needs_a_cpu_cgroup_and_sane_values(tmp_path):
    state, _ = _cgroup_state(tmp_path, 2, enforcement="none")
    with pytest.raises(ActivityFailed, match="cpu_enforcement='none': the replicas have no cpu cgroup quota"):
        cpuquota.throttle_cpu(state)
    with pytest.raises(ActivityFailed, match="cpu_share=0: must be a number above 0"):
        cpuquota.throttle_cpu(state, cpu_share=0)
    with pytest.raises(ActivityFailed, match="has no cpu cgroup"):
        cpuquota.quota_file({"name": "r-0", "cgroup": str(tmp_path / "nowhere")})


# --- an OOM kill through the memory cgroup (harness.chaos.memlimit) ---------------------------------


def _memory_state(tmp_path, enforcement="cgroup-v1"):
    import psutil

    directory = tmp_path / "mem"
    directory.mkdir(parents=True)
    (directory / "memory.limit_in_bytes").write_text("268435456\n")
    (directory / "memory.usage_in_bytes").write_text("31457280\n")
    state = tmp_path / "state.json"
    row = {"name": "r-0", "pid": os.getpid(), "ready": True, "cgroup": str(directory),
           "started_s": psutil.Process().create_time()}  # a live pid that passes the reuse guard
    state.write_text(json.dumps({"memory_enforcement": enforcement, "replicas": [row]}))
    return str(state), directory / "memory.limit_in_bytes"


def test_squeezing_lowers_the_limit_to_the_usage_until_the_process_is_gone_then_restores_it(tmp_path, monkeypatch):
    state, limit = _memory_state(tmp_path)
    seen = []

    def alive(_pid):
        seen.append(limit.read_text())
        return len(seen) < 3  # the kernel's OOM kill, on the third look

    monkeypatch.setattr(memlimit, "_alive", alive)
    try:
        result = memlimit.squeeze_memory(state, timeout_s=5)
    finally:
        targets.last_injection.clear()
    assert seen == ["31457280"] * 3 and limit.read_text() == "268435456"
    assert result["replica"] == "r-0" and result["limit_before"] == "268435456"


def test_squeezing_a_process_that_never_allocates_fails_and_restores_the_limit(tmp_path, monkeypatch):
    state, limit = _memory_state(tmp_path)
    monkeypatch.setattr(memlimit, "_alive", lambda _pid: True)
    try:
        with pytest.raises(ActivityFailed, match="still ran 0.05 s after its memory limit was lowered"):
            memlimit.squeeze_memory(state, timeout_s=0.05)
    finally:
        targets.last_injection.clear()
    assert limit.read_text() == "268435456"
    none_state, _ = _memory_state(tmp_path / "none", enforcement="rlimit")
    with pytest.raises(ActivityFailed, match="memory_enforcement='rlimit': limits.memory is not enforced by a cgroup"):
        memlimit.squeeze_memory(none_state)
