"""The HorizontalPodAutoscaler algorithm as Kubernetes runs it: replica count, tolerance, ignored and missing
replicas, stabilization windows, the scale-up rate and the bounds (pure functions, no processes)."""

from __future__ import annotations

import pytest

from harness.platforms.local.hpa import Stabilizer, bounded, desired_replicas


@pytest.mark.parametrize(("current", "metrics", "target", "expected"), [
    (1, {"a": 200}, 100, 2),  # ceil(1 x 200 / 100): the documentation's example
    (2, {"a": 150, "b": 150}, 100, 3),
    (3, {"a": 50, "b": 50, "c": 50}, 100, 2),  # ceil(3 x 0.5) = 2
    (2, {"a": 105, "b": 105}, 100, 2),  # within the 0.1 tolerance: no change
    (2, {"a": 91, "b": 91}, 100, 2),
    (2, {"a": 89, "b": 89}, 100, 2),  # ratio 0.89: ceil(1.78) = 2
    (4, {"a": 20, "b": 20, "c": 20, "d": 20}, 100, 1),
])
def test_desired_replicas_is_ceil_of_current_times_ratio(current, metrics, target, expected):
    assert desired_replicas(current, metrics, target, ready_count=len(metrics))[0] == expected


def test_a_replica_not_ready_yet_counts_as_idle_on_a_scale_up():
    # one Ready replica at 3x the target, one still starting: (300 + 0) / 2 = 1.5 x target -> 3, not ceil(3 x 1) = 3 of 2
    count, ratio = desired_replicas(2, {"a": 300}, 100, ready_count=1, ignored={"b"})
    assert ratio == 3.0 and count == 3
    # the starting replica brings the ratio within the tolerance: no change
    assert desired_replicas(2, {"a": 210}, 100, ready_count=1, ignored={"b"})[0] == 2


def test_missing_metrics_count_as_target_when_scaling_down_and_zero_when_up():
    # scale-down: the replica without a metric is assumed at the target: (20 + 100) / 2 = 0.6 -> ceil(1.2) = 2
    assert desired_replicas(2, {"a": 20}, 100, ready_count=1, missing={"b"})[0] == 2
    # scale-up: assumed idle: (300 + 0) / 2 = 1.5 -> 3
    assert desired_replicas(2, {"a": 300}, 100, ready_count=1, missing={"b"})[0] == 3
    # a direction flip once filled in: no change
    assert desired_replicas(2, {"a": 150}, 100, ready_count=1, missing={"b"})[0] == 2


def test_no_metric_at_all_is_an_error():
    with pytest.raises(ValueError):
        desired_replicas(1, {}, 100, ready_count=0)


def test_stabilization_takes_the_highest_recent_recommendation_before_scaling_down():
    stabilizer = Stabilizer(up_window_s=0, down_window_s=10)
    assert stabilizer.stabilize(3, 1, now_s=0) == 3  # scale-up: at once
    assert stabilizer.stabilize(1, 3, now_s=4) == 3  # a dip within 10 s: keep 3
    assert stabilizer.stabilize(1, 3, now_s=9) == 3
    assert stabilizer.stabilize(1, 3, now_s=10.5) == 1  # the 3 is older than the window now


def test_a_scale_up_window_takes_the_lowest_recent_recommendation():
    stabilizer = Stabilizer(up_window_s=5, down_window_s=0)
    assert stabilizer.stabilize(2, 2, now_s=0) == 2
    assert stabilizer.stabilize(4, 2, now_s=1) == 2  # a spike shorter than the window does not scale up
    assert stabilizer.stabilize(4, 2, now_s=6) == 4


def test_scale_up_rate_and_bounds():
    stabilizer = Stabilizer()
    assert stabilizer.scale_up_limit(1, now_s=0) == 5  # max(1 + 4 pods, 1 x 200%)
    assert stabilizer.scale_up_limit(10, now_s=0) == 20
    stabilizer.record_scale(10, 20, now_s=0)
    assert stabilizer.scale_up_limit(20, now_s=5) == 20  # 10 added in this 15 s period already
    assert stabilizer.scale_up_limit(20, now_s=16) == 40
    assert bounded(50, 10, min_replicas=1, max_replicas=100, scale_up_limit=20) == (20, "ScaleUpLimit")
    assert bounded(9, 2, min_replicas=1, max_replicas=3, scale_up_limit=6) == (3, "TooManyReplicas")
    assert bounded(0, 2, min_replicas=1, max_replicas=3, scale_up_limit=6) == (1, "TooFewReplicas")
    assert bounded(2, 1, min_replicas=1, max_replicas=3, scale_up_limit=5) == (2, "DesiredWithinRange")
