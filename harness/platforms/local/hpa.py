"""The HorizontalPodAutoscaler's algorithm, as kube-controller-manager runs it, in pure functions.

Ported from Kubernetes' ``pkg/controller/podautoscaler`` (``replica_calculator.go`` and
``horizontal.go``), so that the local platform scales as a cluster would:

1. **Replica count** (`desired_replicas`): ``usageRatio = mean(metric of the pods with a metric) /
   target``; within the tolerance (``|1 - usageRatio| <= 0.1``) nothing changes; otherwise
   ``desiredReplicas = ceil(usageRatio x readyPods)``, i.e. ``ceil(currentReplicas x currentMetric /
   target)`` when every replica is Ready. Replicas that are not Ready yet are *ignored*; on a
   scale-up they count as 0 (a replica still starting must not hide the load), replicas *missing* a
   metric count as 0 on a scale-up and as the target on a scale-down; if that makes the ratio
   change direction, or fall within the tolerance, nothing changes.
2. **Stabilization** (`Stabilizer`): each recommendation is kept with its time; a scale-up takes the
   lowest recommendation within the scale-up window, a scale-down the highest within the scale-down
   window (default 0 s and 300 s), so a short dip does not remove replicas that a burst needs again.
3. **Rate and bounds** (`bounded`): a scale-up may add at most ``max(4 pods, 100%)`` per 15 s (the
   default scale-up policies), and the result stays within ``minReplicas``..``maxReplicas``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SCALE_UP_PODS", "SCALE_UP_PERCENT", "POLICY_PERIOD_S", "desired_replicas", "Stabilizer", "bounded"]

SCALE_UP_PODS = 4  # default scaleUp policies: 4 pods or 100% per 15 s, whichever allows more
SCALE_UP_PERCENT = 100
POLICY_PERIOD_S = 15.0


def _ratio(metrics: Mapping[str, float], target: float) -> float:
    return (sum(metrics.values()) / len(metrics)) / target


def desired_replicas(current: int, metrics: Mapping[str, float], target: float, *, ready_count: int,
                     ignored: set[str] | frozenset[str] = frozenset(), missing: set[str] | frozenset[str] = frozenset(),
                     tolerance: float = 0.1) -> tuple[int, float]:
    """Return (desired replicas, usage ratio) for per-replica ``metrics`` of the Ready replicas against ``target``.

    ``ready_count`` is the number of Ready replicas with a metric; ``ignored`` the replicas not Ready
    yet, ``missing`` the Ready ones without a metric. Raises ValueError when no replica has a metric.
    """
    if not metrics:
        raise ValueError("no Ready replica has a metric yet")
    usage_ratio = _ratio(metrics, target)
    rebalance_ignored = bool(ignored) and usage_ratio > 1.0
    if not rebalance_ignored and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current, usage_ratio
        return math.ceil(usage_ratio * ready_count - 1e-9), usage_ratio
    filled = dict(metrics)
    for name in missing:
        filled[name] = target if usage_ratio < 1.0 else 0.0  # scale-down: assume at target; scale-up: idle
    if rebalance_ignored:
        for name in ignored:
            filled[name] = 0.0  # a replica still starting takes load once Ready: count it as idle
    new_ratio = _ratio(filled, target)
    if abs(1.0 - new_ratio) <= tolerance or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return current, usage_ratio
    new_count = math.ceil(new_ratio * len(filled) - 1e-9)
    if (new_ratio < 1.0 and new_count > current) or (new_ratio > 1.0 and new_count < current):
        return current, usage_ratio
    return new_count, usage_ratio


@dataclass
class Stabilizer:
    """Recent recommendations and scale events of one autoscaler (the controller's memory)."""

    up_window_s: float = 0.0
    down_window_s: float = 300.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas added)

    def stabilize(self, desired: int, current: int, now_s: float) -> int:
        """Record ``desired`` and return the stabilized recommendation (``stabilizeRecommendationWithBehaviors``)."""
        if desired >= current:
            cutoff, better = now_s - self.up_window_s, min
        else:
            cutoff, better = now_s - self.down_window_s, max
        recommendation = desired
        for at, value in self.recommendations:
            if at > cutoff:
                recommendation = better(value, recommendation)
        horizon = now_s - max(self.up_window_s, self.down_window_s)
        self.recommendations = [(at, value) for at, value in self.recommendations if at >= horizon]
        self.recommendations.append((now_s, desired))
        return recommendation

    def record_scale(self, before: int, after: int, now_s: float) -> None:
        """Remember a scale-up (for the rate policies)."""
        if after > before:
            self.scale_ups.append((now_s, after - before))
        self.scale_ups = [(at, n) for at, n in self.scale_ups if at > now_s - POLICY_PERIOD_S]

    def scale_up_limit(self, current: int, now_s: float) -> int:
        """Return the most replicas the default scale-up policies allow now."""
        added = sum(n for at, n in self.scale_ups if at > now_s - POLICY_PERIOD_S)
        start = current - added
        return max(start + SCALE_UP_PODS, math.ceil(start * (1 + SCALE_UP_PERCENT / 100)))


def bounded(desired: int, current: int, *, min_replicas: int, max_replicas: int, scale_up_limit: int) -> tuple[int, str]:
    """Return (replicas, condition): ``desired`` within the rate limit and ``min_replicas``..``max_replicas``."""
    if desired > current:
        ceiling, reason = (scale_up_limit, "ScaleUpLimit") if scale_up_limit < max_replicas else (max_replicas, "TooManyReplicas")
        ceiling = max(ceiling, current)
        if desired > ceiling:
            return ceiling, reason
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > max_replicas:
        return max_replicas, "TooManyReplicas"
    return desired, "DesiredWithinRange"
