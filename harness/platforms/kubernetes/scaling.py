"""The spec's rollout strategy and autoscaling as Kubernetes writes them: the Deployment's ``strategy`` and the
HorizontalPodAutoscaler's ``spec``, with the same values the local platform acts on (`harness.policies`).

A spec without ``autoscaling`` keeps the harness's defaults for a multi-active Deployment (CPU 70% of
the request, or 100 requests/s per pod with ``--hpa-metric rps``, from the spec's replicas to twice
as many); one with it renders its own minReplicas, maxReplicas, target and stabilization windows.
"""

from __future__ import annotations

from typing import Any

from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.kubernetes.options import RenderOptions

__all__ = ["RPS_METRIC", "deployment_strategy", "autoscaler_spec"]

RPS_METRIC = "harness_requests_per_second"  # served to the HPA by a custom-metrics adapter
_DEFAULT_CPU_PERCENT = 70
_DEFAULT_RPS = 100
_DEFAULT_SCALE_DOWN_WINDOW_S = 300


def deployment_strategy(spec: ServiceSpec) -> dict[str, Any]:
    """Return the Deployment's ``strategy``: the spec's values as written, else the topology's defaults as counts
    (1 / 0 for a replicated topology, 0 / 1 for ``single``: no room for a second replica)."""
    strategy = spec.strategy
    if strategy.type == "Recreate":
        return {"type": "Recreate"}
    surge, unavailable = strategy.bounds(spec.replica_count, spec.topology)
    rolling = strategy.rolling_update
    return {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": rolling.max_surge if rolling.max_surge is not None else surge,
        "maxUnavailable": rolling.max_unavailable if rolling.max_unavailable is not None else unavailable,
    }}


def _whole(field: str, value: float) -> int:
    if value != int(value):
        raise ConfigError(field, value, "Kubernetes takes a whole number here")
    return int(value)


def _rps_metric(target: float) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": RPS_METRIC},
                                     "target": {"type": "AverageValue", "averageValue": f"{target:g}"}}}


def _cpu_metric(percent: int) -> dict[str, Any]:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}


def autoscaler_spec(spec: ServiceSpec, options: RenderOptions) -> tuple[dict[str, Any], str]:
    """Return (the HorizontalPodAutoscaler's ``spec``, a note for its annotation); raise ConfigError for a value
    Kubernetes cannot take (a fractional CPU percentage or window)."""
    target_ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name}
    policy = spec.autoscaling
    if policy is None:
        if options.hpa_metric == "cpu":
            metric, note = _cpu_metric(_DEFAULT_CPU_PERCENT), f"scales on CPU at {_DEFAULT_CPU_PERCENT}% of requests"
        else:
            metric = _rps_metric(_DEFAULT_RPS)
            note = f"scales at {_DEFAULT_RPS} requests/s per pod; needs a custom-metrics adapter serving {RPS_METRIC}"
        # a model load takes seconds: scale down slowly so a burst does not thrash replicas
        return {"scaleTargetRef": target_ref, "minReplicas": spec.replica_count,
                "maxReplicas": options.max_replicas or 2 * spec.replica_count, "metrics": [metric],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": _DEFAULT_SCALE_DOWN_WINDOW_S}}}, note
    if policy.metric == "cpu":
        percent = _whole("autoscaling.targetCPUUtilizationPercentage", policy.target)
        metric, note = _cpu_metric(percent), f"from the spec: CPU at {percent}% of requests"
    else:
        metric = _rps_metric(policy.target)
        note = f"from the spec: {policy.target:g} requests/s per pod; needs a custom-metrics adapter serving {RPS_METRIC}"
    note += (f"; the controller's sync period is kube-controller-manager's (the spec's {policy.sync_period_s:g} s "
             f"and tolerance {policy.tolerance:g} apply to the local platform)")
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": _whole("autoscaling.scaleUpStabilizationSeconds", policy.scale_up_stabilization_s)},
        "scaleDown": {"stabilizationWindowSeconds": _whole("autoscaling.scaleDownStabilizationSeconds",
                                                           policy.scale_down_stabilization_s)},
    }
    return {"scaleTargetRef": target_ref, "minReplicas": policy.min_replicas, "maxReplicas": policy.max_replicas,
            "metrics": [metric], "behavior": behavior}, note
