"""The drill activities against a local deployment of stub replicas (real processes, started in a fraction of a
second), through its state file and control channel as `chaos run` would call them; and their errors."""

from __future__ import annotations

import json
import sys

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.chaos import drills, targets
from harness.config import ServiceSpec
from harness.platforms import deploy
from harness.validation import validate_model

STUB_SPEC = {
    "topology": "multi-active",
    "probes": {"liveness": {"path": "/", "periodSeconds": 0.5, "failureThreshold": 3},
               "readiness": {"path": "/", "periodSeconds": 0.2, "failureThreshold": 1}},
    "terminationGracePeriodSeconds": 2,
    "resources": {"limits.memory": "1Gi"},
}


@pytest.fixture
def stub_deployment(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}", "--directory", str(www)]
    deployment = deploy(validate_model(ServiceSpec, STUB_SPEC), workdir=tmp_path / "deployment", command=command)
    try:
        deployment.wait_ready(timeout_s=60)
        yield deployment
    finally:
        deployment.close()
        targets.last_injection.clear()


def test_scale_wait_and_status_through_the_control_channel(stub_deployment):
    state_file = str(stub_deployment.state_path)
    scaled = drills.scale(state_file, 3)
    assert scaled["changed"] == ["reference-2"] and scaled["time_s"] > 0
    assert drills.wait_for_replicas(state_file, 3, timeout_s=30)["replicas"] == 3
    status = drills.rollout_status(state_file)
    assert status["desired_replicas"] == 3 and status["revision"] == 1 and status["rollout"] is None
    with pytest.raises(ActivityFailed, match="wanted exactly 1"):
        drills.wait_for_replicas(state_file, 1, timeout_s=0.5)


def test_a_rollout_action_reports_its_outcome_and_fails_when_another_was_expected(stub_deployment):
    state_file = str(stub_deployment.state_path)
    done = drills.roll_out(state_file, {"service": {"seed": 4}}, "rolling", timeout_s=60, expect_phase="Completed")
    assert done["phase"] == "Completed" and done["drill"] == "rollout" and done["revision"] == 2
    with pytest.raises(ActivityFailed, match="ended RolledBack .*expected Completed"):
        drills.roll_out(state_file, {"probes": {"readiness": {"path": "/missing"}}}, "blue-green",
                        {"progress_deadline_s": 1.5}, timeout_s=60, expect_phase="Completed")
    with pytest.raises(ActivityFailed, match=r"roll_out: overlay.topology='single'"):
        drills.roll_out(state_file, {"topology": "single"})


def test_drill_activities_need_a_local_deployment(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"endpoint": "http://127.0.0.1:9", "fault_token": "t", "replicas": []}))
    with pytest.raises(ActivityFailed, match="names no control port"):
        drills.scale(str(state), 2)
    with pytest.raises(ActivityFailed, match="steps=.*a list of"):
        drills.step_load(str(state), [{"rate_rps": 5}])
