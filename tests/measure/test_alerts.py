"""Monitoring thresholds: p99, sustained GPU utilisation (absent is not zero), memory growth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.measure.alerts import (
    check_gpu_utilisation,
    check_memory_growth,
    check_p99,
    longest_run_above,
    max_window_slope_per_s,
    series,
    slope_per_s,
)

T0 = 1_700_000_000.0


def _gpu(values: list[float | None], *, replica: str = "replica-0", gpu_index: int | None = None) -> list[dict]:
    rows = []
    for i, value in enumerate(values):
        row = {"time_s": T0 + i, "replica": replica, "rss_mb": 500.0}
        if value is not None or i % 2:  # both shapes of "absent": key missing, or None
            row["gpu_util_percent"] = value
        if gpu_index is not None:
            row["gpu_index"] = gpu_index
        rows.append(row)
    return rows


def test_p99_threshold():
    assert check_p99(600.0, 500.0) == ["p99 latency 600.0 ms > 500 ms"]
    assert check_p99(500.0, 500.0) == []
    assert check_p99(None) == [] and check_p99(math.nan) == []


def test_gpu_above_threshold_for_the_sustained_time_is_flagged():
    findings = check_gpu_utilisation(_gpu([95.0] * 70 + [50.0] * 50), 90.0, 60.0)
    assert len(findings) == 1
    assert "70.0 s" in findings[0] and "90%" in findings[0]


def test_gpu_high_but_not_long_enough_or_flapping_is_not_flagged():
    assert check_gpu_utilisation(_gpu([95.0] * 50 + [40.0] * 70), 90.0, 60.0) == []
    assert check_gpu_utilisation(_gpu(([95.0] * 9 + [85.0]) * 12), 90.0, 60.0) == []
    assert check_gpu_utilisation(_gpu([90.0] * 120), 90.0, 60.0) == []  # at the threshold is not above it


def test_absent_gpu_is_never_zero_and_never_an_alert():
    assert check_gpu_utilisation(_gpu([None] * 200)) == []
    assert check_gpu_utilisation([{"time_s": T0 + i, "rss_mb": 100.0} for i in range(200)]) == []
    # Missing readings inside a high run neither clear it (as 0% would) nor add to it.
    values = [95.0] * 40 + [None] * 10 + [95.0] * 30 + [10.0] * 10
    findings = check_gpu_utilisation(_gpu(values), 90.0, 60.0)
    assert len(findings) == 1 and "80.0 s" in findings[0]
    # Readings that failed as NaN or text are absent too.
    assert check_gpu_utilisation([{"time_s": T0 + i, "gpu_util_percent": "n/a"} for i in range(100)]) == []


def test_gpu_whole_short_observation_counts_as_sustained():
    assert len(check_gpu_utilisation(_gpu([97.0] * 20), 90.0, 60.0)) == 1
    assert check_gpu_utilisation(_gpu([97.0] * 19 + [20.0]), 90.0, 60.0) == []
    assert check_gpu_utilisation(_gpu([97.0]), 90.0, 60.0) == []  # one reading is not "sustained"


def test_gpu_device_seen_through_several_rows_is_judged_once():
    rows = _gpu([95.0] * 80, replica="replica-0", gpu_index=0) + _gpu([95.0] * 80, replica="replica-1", gpu_index=0)
    rows += _gpu([95.0] * 80, replica="gpu:0", gpu_index=0)
    findings = check_gpu_utilisation(rows, 90.0, 60.0)
    assert len(findings) == 1 and "gpu 0" in findings[0]
    two_devices = _gpu([95.0] * 80, gpu_index=0) + _gpu([30.0] * 80, gpu_index=1)
    assert len(check_gpu_utilisation(two_devices, 90.0, 60.0)) == 1


def test_gpu_accepts_time_value_pairs():
    assert len(check_gpu_utilisation([(T0 + i, 99.0) for i in range(90)], 90.0, 60.0)) == 1
    assert check_gpu_utilisation([(T0 + i, None) for i in range(90)]) == []


def _rss(slope_mb_per_s: float, seconds: int, *, start_mb: float = 400.0, noise_mb: float = 0.0, seed: int = 0,
         replica: str = "replica-0", pid: int = 100, t_start: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"time_s": T0 + t_start + i, "replica": replica, "pid": pid, "gpu_util_percent": None,
             "rss_mb": start_mb + slope_mb_per_s * i + (rng.normal(0, noise_mb) if noise_mb else 0.0)}
            for i in range(seconds)]


def test_memory_leak_is_flagged_with_its_slope():
    findings = check_memory_growth(_rss(15.0, 120, noise_mb=3.0, seed=1), 10.0, 60.0)
    assert len(findings) == 1 and "memory growth 1" in findings[0] and "> 10 MB/s" in findings[0]


def test_memory_under_threshold_or_noisy_flat_is_not_flagged():
    assert check_memory_growth(_rss(5.0, 120), 10.0, 60.0) == []
    assert check_memory_growth(_rss(0.0, 300, noise_mb=20.0, seed=2), 10.0, 60.0) == []


def test_memory_leak_starting_mid_run_is_caught_by_the_sliding_window():
    rows = _rss(0.0, 200) + [{"time_s": T0 + 200 + i, "replica": "replica-0", "pid": 100, "rss_mb": 400.0 + 20.0 * i}
                             for i in range(1, 101)]
    assert check_memory_growth(rows, 10.0, None) == []  # over the whole run the slope is diluted...
    findings = check_memory_growth(rows, 10.0, 60.0)  # ...a 60 s window sees it
    assert len(findings) == 1 and "20.00 MB/s" in findings[0]


def test_one_off_allocation_is_not_a_leak():
    rows = _rss(0.0, 100) + _rss(0.0, 200, start_mb=700.0, t_start=100.0)
    assert check_memory_growth(rows, 10.0, 60.0) == []


def test_restarted_process_starts_a_new_series():
    # pid 100 grows slowly then restarts as pid 200 at a low RSS: no fake slope across the restart.
    rows = _rss(2.0, 100, start_mb=300.0) + _rss(2.0, 100, start_mb=100.0, pid=200, t_start=100.0)
    assert check_memory_growth(rows, 1.0, 60.0) and len(check_memory_growth(rows, 1.0, 60.0)) == 2
    assert check_memory_growth(rows, 10.0, 60.0) == []


def test_memory_accepts_pairs_and_needs_three_samples():
    assert len(check_memory_growth([(T0 + i, 100.0 + 50.0 * i) for i in range(10)], 10.0, 60.0)) == 1
    assert check_memory_growth([(T0, 100.0), (T0 + 1, 200.0)], 10.0, 60.0) == []
    with pytest.raises(ValueError, match="window_s"):
        check_memory_growth([(T0 + i, 1.0) for i in range(5)], 10.0, 0.0)


def test_building_blocks():
    times = np.arange(10.0)
    assert slope_per_s(times, 3.0 * times + 7.0) == pytest.approx(3.0)
    assert math.isnan(slope_per_s(np.array([1.0]), np.array([2.0])))
    assert math.isnan(max_window_slope_per_s(times[:2], times[:2], 60.0)[0])
    duration, start = longest_run_above(times, np.array([0, 95, 95, 95, 0, 95, 95, 0, 0, 0.0]), 90.0)
    assert (duration, start) == (3.0, 1.0)
    assert longest_run_above(times, np.zeros(10), 90.0) == (0.0, None)
    groups = series([{"time_s": 2.0, "replica": "a", "v": 1}, {"time_s": 1.0, "replica": "a", "v": 2},
                     {"time_s": 1.0, "replica": "b", "v": None}, {"v": 3}, (5.0, 4.0)], "v")
    assert list(groups) == ["", "replica=a"]
    assert list(groups["replica=a"][0]) == [1.0, 2.0] and list(groups["replica=a"][1]) == [2.0, 1.0]
