"""The spec's policies: rollout strategy, rate limit, autoscaling and start faults, validated once and naming
the field and value when wrong."""

from __future__ import annotations

import pytest

from harness.config import ServiceSpec, overlay_spec
from harness.errors import ConfigError
from harness.policies import resolve_int_or_percent
from harness.validation import validate_model


def spec(**data) -> ServiceSpec:
    return validate_model(ServiceSpec, data)


@pytest.mark.parametrize(("value", "total", "up", "expected"), [
    (1, 4, True, 1), ("25%", 4, True, 1), ("25%", 2, True, 1), ("25%", 2, False, 0), ("50%", 3, False, 1),
    ("100%", 3, True, 3), ("0%", 5, True, 0), ("2", 5, True, 2),
])
def test_counts_and_percentages_round_as_kubernetes_does(value, total, up, expected):
    assert resolve_int_or_percent(value if value != "2" else 2, total, round_up=up) == expected


@pytest.mark.parametrize(("data", "bounds"), [
    ({}, (0, 1)),  # single: no room for a second replica, stop first
    ({"topology": "active-standby"}, (1, 0)),
    ({"topology": "multi-active", "replicas": 4}, (1, 0)),  # surge first, never below the replica count
    ({"topology": "multi-active", "replicas": 4, "strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "25%"}}}, (2, 1)),
    ({"topology": "single", "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}, (1, 0)),
    ({"topology": "multi-active", "strategy": {"type": "Recreate"}}, (0, 2)),
    ({"topology": "multi-active", "replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": "10%", "maxUnavailable": "10%"}}}, (1, 0)),
])
def test_strategy_bounds_per_topology(data, bounds):
    made = spec(**data)
    assert made.strategy.bounds(made.replica_count, made.topology) == bounds


def test_autoscaling_sets_the_starting_replicas_and_needs_multi_active():
    made = spec(topology="multi-active", autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetRequestsPerSecond": 50})
    assert made.replica_count == 1 and made.autoscaling.metric == "rps" and made.autoscaling.target == 50
    assert made.autoscaling.scale_down_stabilization_s == 300 and made.autoscaling.tolerance == 0.1  # Kubernetes' defaults
    cpu = spec(topology="multi-active", resources={"requests.cpu": "500m"},
               autoscaling={"maxReplicas": 4, "targetCPUUtilizationPercentage": 70})
    assert cpu.autoscaling.metric == "cpu" and cpu.cpu_request_cores == 0.5


@pytest.mark.parametrize(("data", "field", "value"), [
    ({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}, "strategy.rollingUpdate.maxUnavailable", "0"),
    ({"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}, "strategy.rollingUpdate.maxSurge", "lots"),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, "strategy.type", "Recreate"),
    ({"rate_limit": {"rate": 0, "burst": 5}}, "rate_limit.rate", 0),
    ({"rate_limit": {"rate": 10}}, "rate_limit.burst", None),
    ({"autoscaling": {"maxReplicas": 3, "targetRequestsPerSecond": 5}}, "topology", "single"),
    ({"topology": "multi-active", "autoscaling": {"maxReplicas": 3}}, "autoscaling.targetRequestsPerSecond", "None"),
    ({"topology": "multi-active", "autoscaling": {"minReplicas": 3, "maxReplicas": 2, "targetRequestsPerSecond": 5}},
     "autoscaling.maxReplicas", "2"),
    ({"topology": "multi-active", "replicas": 5, "autoscaling": {"maxReplicas": 3, "targetRequestsPerSecond": 5}},
     "replicas", "5"),
    ({"topology": "multi-active", "autoscaling": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 70}},
     "autoscaling.targetCPUUtilizationPercentage", "70.0"),
    ({"topology": "multi-active", "replicas": 1}, "replicas", "1"),
    ({"service": {"start_faults": [{"kind": "hang"}]}}, "service.start_faults.0.kind", "hang"),
    ({"service": {"start_faults": [{"kind": "slow-inference", "params": {"factor": 0.5}}]}},
     "service.start_faults.0.params.factor", "0.5"),
])
def test_bad_policies_name_the_field_and_value(data, field, value):
    with pytest.raises(ConfigError) as caught:
        spec(**data)
    assert (caught.value.field, caught.value.value) == (field, value)


def test_a_rollout_overlay_changes_only_the_pod_template():
    base = spec(topology="multi-active")
    changed = overlay_spec(base, {"service": {"seed": 3, "start_faults": [{"kind": "crash", "params": {"delay_s": 1}}]}})
    assert changed.service.seed == 3 and changed.service.start_faults[0].kind == "crash"
    assert changed.topology == "multi-active" and changed.service.model == base.service.model
    with pytest.raises(ConfigError) as caught:
        overlay_spec(base, {"replicas": 3})
    assert caught.value.field == "overlay.replicas"
    with pytest.raises(ConfigError) as caught:
        overlay_spec(base, {"service": {"precision": "fp8"}})
    assert (caught.value.field, caught.value.value) == ("overlay.service.precision", "fp8")
