"""Goodput and the p99 of admitted requests under a spike (harness.measure.overload), from records."""

from __future__ import annotations

import math

import pytest

from harness.measure.overload import overload_summary
from harness.request_records import RequestRecord


def _record(t: float, latency_ms: float, status: int) -> RequestRecord:
    return RequestRecord(t, t, latency_ms, status, status == 200, "" if status == 200 else f"HTTP {status}", "rate")


def test_rejected_requests_are_not_admitted_and_failures_count_in_the_admitted_p99():
    records = ([_record(i * 0.01, 20.0, 200) for i in range(90)] + [_record(0.5, 1.0, 429)] * 50
               + [_record(0.6, 2000.0, 503)] * 10 + [_record(0.7, math.nan, 0)])  # the last one never sent
    summary = overload_summary(records, slo_latency_ms=500, duration_s=2.0)
    assert (summary["requests"], summary["not_sent"], summary["rejected"], summary["admitted"]) == (151, 1, 50, 100)
    assert (summary["ok"], summary["shed_503"], summary["failed_admitted"]) == (90, 10, 10)
    assert summary["p99_admitted_ms"] == pytest.approx(2000.0)  # the shed requests' wait is what they got
    assert summary["p99_ok_ms"] == pytest.approx(20.0) and not summary["p99_admitted_within_slo"]
    assert summary["goodput_rps"] == 45.0 and summary["offered_rps"] == 75.5


def test_slow_successes_are_not_goodput():
    summary = overload_summary([_record(0, 100, 200), _record(0.5, 900, 200)], slo_latency_ms=500, duration_s=1.0)
    assert summary["goodput_rps"] == 1.0 and summary["ok"] == 2 and summary["p99_admitted_within_slo"] is False
    with pytest.raises(ValueError):
        overload_summary([], slo_latency_ms=500)
