"""Every experiment file passes `chaos validate`, and carries a harness extension the harness accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.chaos.experiment import load_experiment, merge_spec
from harness.chaos.presets import CHAOS_PRESETS

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.json"))
CHAOS = Path(sys.executable).with_name("chaos")
PARALLEL = 4
TIMEOUT_S = 120


def test_there_are_experiments_for_every_fault_of_the_issue():
    names = {path.stem for path in (ROOT / "experiments").glob("*.json")}
    wanted = {"pod-kill", "pod-kill-graceful", "oom-kill", "liveness-probe-delay", "readiness-probe-delay",
              "slow-startup", "slow-startup-fixed", "memory-leak", "hang"}
    assert wanted <= names
    assert {path.stem for path in (ROOT / "experiments" / "kubernetes").glob("*.json")}


def test_chaos_validate_accepts_every_experiment_file(tmp_path):
    """Runs the real `chaos validate` (it imports the python activities) on each file, a few at a time."""
    env = dict(os.environ)
    env.pop("HARNESS_STATE_FILE", None)  # the files must validate without a deployment
    pending = list(EXPERIMENTS)
    running: list[tuple[Path, subprocess.Popen]] = []
    failures: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while pending or running:
            while pending and len(running) < PARALLEL:
                path = pending.pop()
                argv = [str(CHAOS), "--no-version-check", "--no-log-file", "validate", str(path)]
                running.append((path, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)))
            for path, proc in list(running):
                if proc.poll() is not None:
                    output = proc.stdout.read().decode(errors="replace")
                    proc.stdout.close()
                    running.remove((path, proc))
                    if proc.returncode != 0 or "look valid" not in output:
                        failures.append(f"{path.relative_to(ROOT)}: exit {proc.returncode}\n{output[-800:]}")
            assert time.monotonic() < deadline, "chaos validate took too long"
            time.sleep(0.05)
    finally:
        for _, proc in running:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_the_harness_extension_is_valid_and_its_spec_deploys(path):
    experiment = load_experiment(path)
    assert experiment.fault == path.stem
    assert experiment.document["description"] and experiment.document["rollbacks"], "every experiment cleans up"
    for preset in CHAOS_PRESETS.values():
        for topology in experiment.extension.topologies:  # a drill names the topologies it means anything on
            spec = merge_spec(preset.base_spec, experiment.extension.spec, topology=topology)
            assert spec.topology == topology


def test_the_drills_of_issue_20_are_there_and_name_their_topologies():
    names = {path.stem for path in (ROOT / "experiments").glob("*.json")}
    assert {"rolling-update", "blue-green", "canary-broken", "overload-spike", "overload-spike-no-limit",
            "autoscale-step"} <= names
    for name in ("rolling-update", "blue-green", "canary-broken"):  # rollouts: on every topology
        assert load_experiment(ROOT / "experiments" / f"{name}.json").extension.topologies == [
            "single", "active-standby", "multi-active"]
    assert load_experiment(ROOT / "experiments" / "autoscale-step.json").extension.topologies == ["multi-active"]
