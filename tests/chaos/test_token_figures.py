"""A chaos run's token figures around the fault: exact, from the load's records, before and from the injection."""

from __future__ import annotations

from harness.chaos.result import token_figures
from harness.request_records import RequestRecord


def _record(sent_s: float, ok: bool = True, ttft_ms: float = 10.0) -> RequestRecord:
    return RequestRecord(intended_s=sent_s, sent_s=sent_s, latency_ms=50.0, status=200 if ok else 0, ok=ok,
                         ttft_ms=ttft_ms if ok else float("nan"), tpot_ms=2.0 if ok else float("nan"),
                         output_tokens=16 if ok else 0, itl_ms=(2.0, 2.0) if ok else ())


def test_token_figures_split_at_the_injection_and_leave_out_what_came_before_the_baseline():
    records = [_record(90.0, ttft_ms=999.0)]  # before the baseline window: not counted
    records += [_record(100.0 + i * 0.1, ttft_ms=10.0) for i in range(10)]
    records += [_record(101.0 + i * 0.1, ok=i % 2 == 0, ttft_ms=30.0) for i in range(10)]
    records += [_record(103.0, ok=False)]  # after the recovery window (the teardown): not counted
    figures = token_figures(records, injected_at=101.0, end_s=102.5, slo_latency_ms=500.0, baseline_s=2.0)
    before, after = figures["tokens_before"], figures["tokens_after"]
    assert before["requests"] == before["ok"] == before["good"] == 10 and before["ttft_p50_ms"] == 10.0
    assert after["requests"] == 10 and after["ok"] == after["good"] == 5 and after["ttft_p50_ms"] == 30.0
    assert figures["tokens"]["requests"] == 20 and figures["tokens"]["output_tokens"] == 15 * 16


def test_a_load_without_tokens_or_without_an_injection_has_no_token_figures():
    plain = [RequestRecord(intended_s=1.0, sent_s=1.0, latency_ms=5.0, status=200, ok=True)]
    assert token_figures(plain, injected_at=1.0, end_s=None, slo_latency_ms=500.0, baseline_s=2.0) == {}
    assert token_figures([_record(1.0)], injected_at=None, end_s=None, slo_latency_ms=500.0, baseline_s=2.0) == {}


def test_the_chaos_command_prints_the_token_figures_before_and_from_the_fault():
    from harness.cli.chaos import _tokens_line

    records = [_record(100.0 + i * 0.1) for i in range(10)] + [_record(101.0 + i * 0.1, ok=i > 0, ttft_ms=40.0) for i in range(4)]
    line = _tokens_line(token_figures(records, injected_at=101.0, end_s=None, slo_latency_ms=500.0, baseline_s=2.0))
    assert line == ("  tokens before the fault: TTFT p50/p99 10.0/10.0 ms, ITL p99 2.0 ms, goodput 10/10; "
                    "from it: TTFT p50/p99 40.0/40.0 ms, ITL p99 2.0 ms, goodput 3/4")
