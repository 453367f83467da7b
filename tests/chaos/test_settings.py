"""What a chaos run deploys: profile base or the user's spec, the experiment's overlay, the topology."""

from __future__ import annotations

import pytest

from harness.chaos.activities import availability_over_last
from harness.chaos.experiment import load_experiment
from harness.chaos.presets import get_chaos_preset
from harness.chaos.settings import ChaosRunSettings
from harness.errors import ConfigError
from harness.request_records import ProbeSample, write_records

from .helpers import ROOT


def _settings(**kw):
    return ChaosRunSettings(experiment=load_experiment(ROOT / "experiments" / "oom-kill.json"), topology="active-standby",
                            preset=get_chaos_preset("smoke"), **kw)


def test_profile_base_then_experiment_overlay_then_topology():
    spec = _settings().spec()
    assert spec.topology == "active-standby" and spec.replica_count == 2
    assert spec.resources.limits_memory == "1Gi"  # the experiment needs a limit to exceed
    assert spec.probes.readiness.period_s == 0.25 and spec.restart.backoff_base_s == 1  # smoke timings
    assert spec.balancer.retry_on_connect_error is False
    assert _settings(retry=True).spec().balancer.retry_on_connect_error is True


def test_a_user_spec_replaces_the_profile_base_but_keeps_the_overlay():
    spec = _settings(spec_data={"service": {"max_batch_size": 8}, "resources": {"limits.memory": "8Gi", "limits.cpu": "1"}}).spec()
    assert spec.service.max_batch_size == 8 and spec.resources.limits_cpu == "1"
    assert spec.resources.limits_memory == "1Gi"
    assert spec.probes.readiness.period_s == 1  # Kubernetes-like defaults, not the smoke profile's


def test_a_bad_user_spec_names_the_field():
    with pytest.raises(ConfigError) as info:
        _settings(spec_data={"probes": {"readiness": {"path": "/r", "periodSeconds": -1}}}).spec()
    assert info.value.field == "probes.readiness.periodSeconds"


def test_availability_over_the_last_seconds_of_a_timeline(tmp_path):
    samples = [ProbeSample(100.0 + 0.1 * i, ok=i % 4 != 0, latency_ms=5.0, status=200) for i in range(100)]
    write_records(tmp_path / "timeline.csv", samples, ProbeSample)
    assert availability_over_last(str(tmp_path / "timeline.csv"), seconds=2.0) == pytest.approx(75.0, abs=5)
