"""Confidence intervals on known samples and the stability rule (the tests that compare runs: test_regression)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.measure.stats import (
    assess_stability,
    bootstrap_ci,
    is_stable,
    mean_ci,
    median_ci,
    summarize_repeats,
)

# Student's (Gosset's) sleep data, the textbook example of the t-interval: extra hours of sleep.
SLEEP_EXTRA_H = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]


def test_mean_ci_matches_scipy_t_interval_on_textbook_data():
    interval = mean_ci(SLEEP_EXTRA_H, 0.95)
    low, high = sps.t.interval(0.95, df=9, loc=np.mean(SLEEP_EXTRA_H), scale=sps.sem(SLEEP_EXTRA_H))
    assert interval.estimate == pytest.approx(0.75)
    assert interval.low == pytest.approx(low) and interval.high == pytest.approx(high)
    # R's t.test(sleep$extra[1:10]) prints -0.5297804  2.0297804
    assert interval.low == pytest.approx(-0.5297804, abs=1e-6)
    assert interval.high == pytest.approx(2.0297804, abs=1e-6)
    assert interval.n == 10 and "t-interval" in interval.method


def test_mean_ci_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(12345)
    trials, hits = 2000, 0
    for _ in range(trials):
        hits += mean_ci(rng.normal(100.0, 15.0, size=8), 0.95).contains(100.0)
    assert 0.935 <= hits / trials <= 0.965


def test_median_ci_uses_textbook_order_statistics():
    data = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0]
    interval = median_ci(data, 0.95)
    # n = 10: [x(2), x(9)], coverage 1 - 2 * 11 / 1024
    assert (interval.low, interval.high) == (2.0, 9.0)
    assert interval.confidence == pytest.approx(1 - 22 / 1024)
    assert interval.estimate == 5.5


def test_median_ci_is_honest_about_too_few_repeats():
    interval = median_ci([3.0, 1.0, 2.0], 0.95)
    assert (interval.low, interval.high) == (1.0, 3.0)
    assert interval.confidence == pytest.approx(0.75)
    assert "min-max" in interval.method


def test_median_ci_covers_true_median_at_least_nominal_rate():
    rng = np.random.default_rng(99)
    true_median = math.exp(2.0)  # lognormal(2, 1): skewed, so a mean interval would not do
    trials, hits = 2000, 0
    for _ in range(trials):
        hits += median_ci(rng.lognormal(2.0, 1.0, size=20), 0.95).contains(true_median)
    achieved = median_ci(np.arange(20.0), 0.95).confidence
    assert achieved >= 0.95
    assert 0.94 <= hits / trials <= achieved + 0.015


def test_bootstrap_is_seeded_and_reasonable():
    rng = np.random.default_rng(3)
    data = rng.normal(50.0, 5.0, size=40)
    first = bootstrap_ci(data, seed=7)
    again = bootstrap_ci(data, seed=7)
    other = bootstrap_ci(data, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < np.median(data) < first.high
    assert bootstrap_ci(data, np.mean, seed=1).contains(float(np.mean(data)))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci(data, resamples=10)


def test_intervals_with_too_few_samples_are_nan_not_errors():
    assert math.isnan(mean_ci([1.0]).low)
    assert math.isnan(median_ci([]).estimate)
    assert math.isnan(bootstrap_ci([2.0]).high)
    assert mean_ci([1.0, math.nan, 3.0]).n == 2  # NaN windows dropped


def test_bad_confidence_raises_naming_it():
    with pytest.raises(ValueError, match="confidence=1.5"):
        mean_ci([1, 2, 3], 1.5)
    with pytest.raises(ValueError, match="method='nope'"):
        summarize_repeats([1, 2, 3], method="nope")


def test_summarize_repeats_auto_method_and_flat_dict():
    few = summarize_repeats([10.0, 11.0, 12.0])
    assert few.median == 11.0 and "t-interval" in few.ci.method
    many = summarize_repeats(np.arange(1.0, 11.0))
    assert "order statistics" in many.ci.method
    data = many.to_dict()
    assert {"n", "median", "mean", "std", "ci_low", "ci_high", "ci_confidence", "ci_method", "relative_half_width"} <= set(data)
    json.dumps(data, allow_nan=False)


def test_stability_rule():
    assert not is_stable([100.0, 101.0])  # fewer than min_repeats
    assert is_stable([100.0, 101.0, 99.5, 100.2])
    noisy = assess_stability([100.0, 140.0, 70.0, 120.0])
    assert not noisy.stable and noisy.relative_half_width > 0.05 and ">" in noisy.reason
    assert is_stable([100.0, 140.0, 70.0, 120.0], max_relative_half_width=0.6)
    assert is_stable([5.0, 5.0, 5.0])
    with pytest.raises(ValueError, match="min_repeats"):
        assess_stability([1.0, 2.0], min_repeats=1)
    with pytest.raises(ValueError, match="max_relative_half_width"):
        assess_stability([1.0, 2.0], max_relative_half_width=0)
