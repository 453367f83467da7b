"""Deployment policies of the service spec: rollout strategy, rate limit and autoscaling.

Kubernetes field names where Kubernetes has the concept (``strategy.rollingUpdate.maxSurge``,
``autoscaling.minReplicas``, ``behavior``-style stabilization windows), validated here once; an
invalid value raises (through `harness.validation.validate_model`) a `ConfigError` naming the field and
the value. `harness.config.ServiceSpec` holds them; the local platform acts on them
(`harness.platforms.local.rollout`, `.autoscaler`, the balancer's token bucket) and the Kubernetes
renderer writes the same values into the Deployment's strategy and the HorizontalPodAutoscaler.

Definitions (as Kubernetes has them):

- ``maxSurge`` / ``maxUnavailable``: an absolute count or a percentage of the desired replicas;
  ``maxSurge`` rounds up, ``maxUnavailable`` down; both zero is refused (no rollout could progress).
  Left out, they are the harness's defaults rather than Kubernetes' 25% / 25%: 1 / 0 on a replicated
  topology (surge first, never serve from fewer replicas than desired: what the rendered Deployment
  has always said), 0 / 1 on ``single``, which has no room for a second replica (a GPU box): the old
  replica stops before the new one starts, the outage a single replica has, unless the spec asks for
  a surge.
- rate limit: a token bucket of ``burst`` tokens refilled at ``rate`` per second; a request that
  finds no token is answered 429 with ``Retry-After`` (whole seconds until the next token).
- autoscaling: the HorizontalPodAutoscaler algorithm (`harness.platforms.local.hpa`) with one
  target, CPU utilisation of ``requests.cpu`` (``targetCPUUtilizationPercentage``) or requests per
  second per replica (``targetRequestsPerSecond``), ``tolerance`` 0.1, and stabilization windows.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["IntOrPercent", "RollingUpdate", "Strategy", "RateLimit", "Autoscaling", "resolve_int_or_percent"]

_PERCENT = re.compile(r"^([0-9]+)%$")
IntOrPercent = int | str


def resolve_int_or_percent(value: IntOrPercent, total: int, *, round_up: bool) -> int:
    """Return ``value`` (a count, or "25%" of ``total``, rounded up or down) as a count; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a count or a percentage such as '25%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _PERCENT.match(str(value).strip())
    if not match:
        raise ValueError("expected a count or a percentage such as '25%'")
    share = int(match.group(1)) * total / 100
    return math.ceil(share - 1e-9) if round_up else math.floor(share + 1e-9)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class RollingUpdate(_Model):
    """``strategy.rollingUpdate``: how far a rolling update may go above and below the desired replicas."""

    max_surge: IntOrPercent | None = Field(None, alias="maxSurge")
    max_unavailable: IntOrPercent | None = Field(None, alias="maxUnavailable")

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _count_or_percent(cls, value: IntOrPercent | None) -> IntOrPercent | None:
        if value is not None:
            resolve_int_or_percent(value, 100, round_up=True)
        return value


class Strategy(_Model):
    """``strategy``: a Deployment's update strategy (``RollingUpdate`` or ``Recreate``)."""

    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate = Field(default_factory=RollingUpdate, alias="rollingUpdate")

    def bounds(self, replicas: int, topology: str) -> tuple[int, int]:
        """Return (max surge, max unavailable) as counts for ``replicas`` desired replicas on ``topology``."""
        if self.type == "Recreate":
            return 0, replicas
        surge_default, unavailable_default = (0, 1) if topology == "single" else (1, 0)
        surge_value = self.rolling_update.max_surge if self.rolling_update.max_surge is not None else surge_default
        unavailable_value = (self.rolling_update.max_unavailable if self.rolling_update.max_unavailable is not None
                             else unavailable_default)
        surge = resolve_int_or_percent(_count(surge_value), replicas, round_up=True)
        unavailable = resolve_int_or_percent(_count(unavailable_value), replicas, round_up=False)
        if surge == 0 and unavailable == 0:  # Kubernetes refuses it; a percentage can round to it: go one at a time
            unavailable = 1
        return surge, unavailable

    @model_validator(mode="after")
    def _can_progress(self) -> "Strategy":
        rolling = self.rolling_update
        if self.type == "Recreate" and (rolling.max_surge is not None or rolling.max_unavailable is not None):
            raise ValueError(f"type={self.type}: rollingUpdate only applies to type RollingUpdate")
        if _is_zero(rolling.max_surge) and _is_zero(rolling.max_unavailable):
            raise ValueError("rollingUpdate.maxUnavailable=0: may not be 0 when maxSurge is 0 (no rollout could progress)")
        return self


def _count(value: IntOrPercent) -> IntOrPercent:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _is_zero(value: IntOrPercent | None) -> bool:
    return value is not None and resolve_int_or_percent(_count(value), 100, round_up=True) == 0


class RateLimit(_Model):
    """``rate_limit``: the front balancer's token bucket (``rate`` requests/s, ``burst`` tokens)."""

    rate: float = Field(gt=0, le=1_000_000)
    burst: int = Field(gt=0, le=1_000_000)


class Autoscaling(_Model):
    """``autoscaling``: a HorizontalPodAutoscaler for the deployment (multi-active only).

    Exactly one target: ``targetCPUUtilizationPercentage`` (of ``resources.requests.cpu``, or of
    ``limits.cpu`` when no request is given, as Kubernetes defaults requests to limits) or
    ``targetRequestsPerSecond`` per replica. ``scaleUpStabilizationSeconds`` (Kubernetes default 0)
    and ``scaleDownStabilizationSeconds`` (default 300) are the behavior's stabilization windows;
    ``syncPeriodSeconds`` is the controller's loop period (kube-controller-manager's 15 s).
    """

    min_replicas: int = Field(1, alias="minReplicas", ge=1, le=64)
    max_replicas: int = Field(alias="maxReplicas", ge=1, le=64)
    target_cpu_utilization_percent: float | None = Field(None, alias="targetCPUUtilizationPercentage", gt=0, le=1000)
    target_requests_per_s: float | None = Field(None, alias="targetRequestsPerSecond", gt=0, le=1_000_000)
    tolerance: float = Field(0.1, ge=0, lt=1)
    scale_up_stabilization_s: float = Field(0.0, alias="scaleUpStabilizationSeconds", ge=0, le=3600)
    scale_down_stabilization_s: float = Field(300.0, alias="scaleDownStabilizationSeconds", ge=0, le=3600)
    sync_period_s: float = Field(15.0, alias="syncPeriodSeconds", gt=0, le=600)

    @model_validator(mode="after")
    def _one_target(self) -> "Autoscaling":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas={self.max_replicas!r}: below minReplicas={self.min_replicas!r}")
        targets = [t for t in (self.target_cpu_utilization_percent, self.target_requests_per_s) if t is not None]
        if len(targets) != 1:
            raise ValueError("targetRequestsPerSecond=None: give exactly one target, targetCPUUtilizationPercentage "
                             "or targetRequestsPerSecond")
        return self

    @property
    def metric(self) -> str:
        """``"cpu"`` or ``"rps"``: what the autoscaler scales on."""
        return "cpu" if self.target_cpu_utilization_percent is not None else "rps"

    @property
    def target(self) -> float:
        """The target value: percent of the CPU request, or requests per second per replica."""
        value = self.target_cpu_utilization_percent if self.metric == "cpu" else self.target_requests_per_s
        assert value is not None  # one of the two, by validation
        return value
