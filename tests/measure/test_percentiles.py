"""Exact percentiles agree with numpy; summaries count failures apart and use unit-suffixed keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.measure.percentiles import (
    SUMMARY_PERCENTILES,
    ok_latencies_ms,
    percentile,
    percentile_key,
    percentiles,
    select_window,
    summarize,
    summarize_latencies,
    summarize_windows,
)
from harness.request_records import ProbeSample, RequestRecord


def _request(t: float, latency_ms: float, status: int = 200, ok: bool | None = None) -> RequestRecord:
    ok = (status == 200) if ok is None else ok
    return RequestRecord(intended_s=t, sent_s=t, latency_ms=latency_ms, status=status, ok=ok)


@pytest.mark.parametrize("seed", range(20))
def test_percentiles_agree_with_numpy_linear_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2000))
    data = rng.lognormal(mean=3.0, sigma=1.0, size=n)
    qs = [0, 0.1, 1, 25, 50, 90, 95, 99, 99.9, 99.99, 100, float(rng.uniform(0, 100))]
    ours = percentiles(data, qs)
    expected = np.percentile(data, qs)
    for q, value in zip(qs, expected):
        assert ours[q] == pytest.approx(value, rel=1e-12, abs=0)


def test_percentiles_drop_nan_and_inf_like_numpy_nanpercentile():
    rng = np.random.default_rng(7)
    data = rng.normal(100, 10, size=501)
    data[::7] = np.nan
    data[3] = np.inf
    finite = data[np.isfinite(data)]
    for q in SUMMARY_PERCENTILES:
        assert percentile(data, q) == pytest.approx(np.percentile(finite, q), rel=1e-12)
        assert percentile(data[data != np.inf], q) == pytest.approx(np.nanpercentile(data[data != np.inf], q), rel=1e-12)


def test_small_known_values():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile([1, 2, 3, 4, 5], 0) == 1
    assert percentile([1, 2, 3, 4, 5], 100) == 5
    # h = (5 - 1) * 0.9 = 3.6: between 4 and 5.
    assert percentile([5, 4, 3, 2, 1], 90) == pytest.approx(4.6)


def test_empty_gives_nan_and_bad_q_raises():
    assert math.isnan(percentile([], 50))
    assert math.isnan(percentile([math.nan, math.nan], 50))
    with pytest.raises(ValueError, match="q=101"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="q=-1"):
        percentiles([1.0], [50, -1])


def test_percentile_key_names():
    assert percentile_key(99) == "p99_ms"
    assert percentile_key(99.9) == "p99_9_ms"
    assert percentile_key(50.0) == "p50_ms"
    assert percentile_key(95, unit="") == "p95"


def test_summary_excludes_failures_from_latency_and_counts_them_by_status():
    records = [_request(100.0 + i * 0.1, 10.0 + i) for i in range(10)]
    records += [_request(100.05, 5000.0, status=0), _request(100.15, 1.0, status=503), _request(100.25, 2.0, status=503)]
    summary = summarize(records, start_s=100.0, end_s=101.0)
    assert summary.count == 13
    assert summary.ok == 10
    assert summary.errors == 3
    assert summary.errors_by_status == {0: 1, 503: 2}
    ok_latencies = [10.0 + i for i in range(10)]
    assert summary.p50_ms == pytest.approx(np.percentile(ok_latencies, 50))
    assert summary.p99_ms == pytest.approx(np.percentile(ok_latencies, 99))
    assert summary.p99_9_ms == pytest.approx(np.percentile(ok_latencies, 99.9))
    assert summary.mean_ms == pytest.approx(np.mean(ok_latencies))
    assert summary.max_ms == 19.0
    assert summary.duration_s == pytest.approx(1.0)
    assert summary.throughput_rps == pytest.approx(10.0)
    assert summary.request_rate_rps == pytest.approx(13.0)
    assert summary.error_rate == pytest.approx(3 / 13)


def test_summary_to_dict_has_unit_suffixed_keys_and_is_json_ready():
    summary = summarize([_request(0.0, 5.0, status=0)], start_s=0.0, end_s=2.0)
    data = summary.to_dict()
    for key in ("count", "ok", "errors", "errors_by_status", "throughput_rps", "request_rate_rps",
                "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "mean_ms", "max_ms", "duration_s"):
        assert key in data
    assert data["p99_ms"] is None  # no ok request: no latency, not 0
    assert data["errors_by_status"] == {"0": 1}
    assert data["throughput_rps"] == 0.0
    json.dumps(data, allow_nan=False)


def test_summary_window_selects_by_send_time_half_open():
    records = [_request(float(t), 1.0) for t in range(10)]
    chosen = select_window(records, 2.0, 5.0)
    assert [r.intended_s for r in chosen] == [2.0, 3.0, 4.0]
    assert summarize(records, start_s=2.0, end_s=5.0).count == 3


def test_summary_duration_defaults_to_first_send_to_last_completion():
    records = [_request(10.0, 100.0), _request(11.0, 500.0)]
    summary = summarize(records)
    assert summary.duration_s == pytest.approx(1.5)
    assert summary.throughput_rps == pytest.approx(2 / 1.5)


def test_summary_of_nothing_is_nan_not_zero_and_bad_window_raises():
    summary = summarize([])
    assert summary.count == 0
    assert math.isnan(summary.p50_ms) and math.isnan(summary.throughput_rps) and math.isnan(summary.error_rate)
    with pytest.raises(ValueError, match="end_s"):
        summarize([], start_s=5.0, end_s=1.0)


def test_summary_works_on_prober_samples():
    samples = [ProbeSample(t_s=i * 0.05, ok=i % 4 != 0, latency_ms=float(i), status=200 if i % 4 else 503) for i in range(40)]
    summary = summarize(samples, start_s=0.0, end_s=2.0)
    assert summary.count == 40 and summary.errors == 10 and summary.errors_by_status == {503: 10}
    assert summary.p50_ms == pytest.approx(np.percentile([i for i in range(40) if i % 4], 50))


def test_ok_with_nan_latency_is_not_in_percentiles():
    records = [_request(0.0, math.nan), _request(0.1, 4.0)]
    assert list(ok_latencies_ms(records)) == [4.0]


def test_summarize_latencies_defaults_and_length_check():
    summary = summarize_latencies([1.0, 2.0, math.nan], duration_s=1.0)
    assert summary.ok == 2 and summary.errors == 1 and summary.errors_by_status == {0: 1}
    with pytest.raises(ValueError, match="differ in length"):
        summarize_latencies([1.0, 2.0], [True])


def test_custom_percentiles_and_at():
    summary = summarize_latencies(np.arange(1, 101, dtype=float), qs=(75, 99.99), duration_s=10.0)
    assert summary.at(75) == pytest.approx(np.percentile(np.arange(1, 101), 75))
    assert "p99_99_ms" in summary.to_dict()
    assert math.isnan(summary.p50_ms)


def test_summarize_windows_splits_into_equal_windows():
    records = [_request(100.0 + i * 0.01, float(i % 7)) for i in range(300)]
    windows = summarize_windows(records, start_s=100.0, window_s=1.0, count=3)
    assert [w.count for w in windows] == [100, 100, 100]
    assert all(w.throughput_rps == pytest.approx(100.0) for w in windows)
    with pytest.raises(ValueError, match="window_s"):
        summarize_windows(records, start_s=0.0, window_s=0.0, count=1)


def test_a_windows_throughput_counts_answers_in_it_so_an_overloaded_service_shows_its_capacity():
    # 200 req/s offered for 3 s to a service that answers 100 a second in order: the backlog grows,
    # every request is answered late, none fails
    records, free_at = [], 0.0
    for i in range(600):
        sent = i / 200.0
        done = max(sent, free_at) + 0.01
        free_at = done
        records.append(_request(sent, (done - sent) * 1000.0))
    windows = summarize_windows(records, start_s=1.0, window_s=1.0, count=2)
    assert [w.count for w in windows] == [200, 200]  # sent in each window
    assert [w.request_rate_rps for w in windows] == [pytest.approx(200.0)] * 2
    assert [w.throughput_rps for w in windows] == [pytest.approx(100.0, abs=1.0)] * 2  # answered in each
    # below capacity, answered and sent agree
    easy = [_request(i / 50.0, 5.0) for i in range(150)]
    assert [w.throughput_rps for w in summarize_windows(easy, start_s=1.0, window_s=1.0, count=2)] == [
        pytest.approx(50.0, abs=1.0)] * 2

