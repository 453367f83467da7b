"""Goodput and the p99 of admitted requests under a spike, and the backlog growth that says whether a service kept up (harness.measure.overload), from records."""

from __future__ import annotations

import math

import pytest

from harness.measure.overload import backlog_growth, completed_rate, overload_summary
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


def test_backlog_growth_tells_an_overloaded_queue_from_one_filling_or_draining():
    def fifo(rate, service_s, n, start_backlog_s=0.0):
        records, free_at = [], start_backlog_s
        for i in range(n):
            sent = i / rate
            done = max(sent, free_at) + service_s
            free_at = done
            records.append(RequestRecord(intended_s=sent, sent_s=sent, latency_ms=(done - sent) * 1000.0, status=200, ok=True))
        return records

    over = fifo(200.0, 0.01, 600)  # 200 offered to a server of 100: the wait grows 1 s per s
    growth = backlog_growth(over, 1.0, 3.0)
    assert growth == pytest.approx(1.0, rel=0.02)
    assert completed_rate(200.0, growth) == pytest.approx(100.0, rel=0.02)
    steady = fifo(80.0, 0.01, 240)
    assert abs(backlog_growth(steady, 1.0, 3.0)) < 1e-9 and completed_rate(80.0, 0.0) == 80.0
    draining = fifo(80.0, 0.01, 240, start_backlog_s=1.5)  # a burst left 1.5 s of work: it drains
    assert backlog_growth(draining, 0.0, 2.0) < 0 and completed_rate(80.0, backlog_growth(draining, 0.0, 2.0)) == 80.0
    assert math.isnan(backlog_growth(steady[:2], 0.0, 3.0))
