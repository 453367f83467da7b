"""TTFT and ITL over time around a fault (harness.measure.token_timeline): bins and phases over synthetic
records, every figure exact."""

from __future__ import annotations

import math

import pytest

from harness.measure.token_timeline import bin_tokens, gap_times_s, token_phases
from harness.request_records import RequestRecord

T0 = 1_700_000_000.0  # the injection


def rec(sent: float, ttft_ms: float, gaps: tuple[float, ...] = (), ok: bool = True) -> RequestRecord:
    latency = ttft_ms + sum(gaps)
    return RequestRecord(T0 + sent, T0 + sent, latency, 200 if ok else 0, ok, "" if ok else "stream cut", "rate",
                         ttft_ms=ttft_ms, output_tokens=len(gaps) + 1, itl_ms=gaps)


RECORDS = [
    rec(-1.5, 10.0, (5.0, 5.0)),          # bin -2: TTFT 10; gaps end at -1.485, -1.480
    rec(-1.2, 30.0, (10.0,)),             # bin -2: TTFT 30; gap ends at -1.160
    rec(-0.5, 20.0, (600.0, 10.0)),       # bin -1: TTFT 20; gaps end at +0.120 (600) and +0.130 (10): bin 0
    rec(0.0, 200.0, (20.0,)),             # bin 0 (at the injection): TTFT 200; gap ends at +0.220
    rec(0.4, math.nan, (), ok=False),     # bin 0: failed, no TTFT
    rec(2.5, 40.0, (8.0,)),               # bin 2: TTFT 40; gap ends at 2.548 (bin 1 is empty)
]


def test_gap_times_run_from_the_intended_send_time():
    assert gap_times_s(RECORDS[0]) == pytest.approx([T0 - 1.485, T0 - 1.48])
    assert gap_times_s(rec(0.0, math.nan, (5.0,))) == []


def test_bins_place_ttft_by_send_time_and_gaps_by_when_they_ended():
    bins = {b.start_s: b for b in bin_tokens(RECORDS, T0)}
    assert sorted(bins) == [-2.0, -1.0, 0.0, 1.0, 2.0]  # the empty second between is kept
    before = bins[-2.0]
    assert (before.requests, before.failed, before.gaps) == (2, 0, 3)
    assert before.ttft_p50_ms == pytest.approx(20.0) and before.ttft_p99_ms == pytest.approx(29.8)  # 10 + 0.99 * 20
    assert before.itl_p50_ms == pytest.approx(5.0) and before.itl_p99_ms == pytest.approx(9.9)      # 5, 5, 10
    assert (bins[-1.0].requests, bins[-1.0].gaps) == (1, 0) and bins[-1.0].ttft_p99_ms == pytest.approx(20.0)
    at = bins[0.0]  # the stall's 600 ms gap shows where the stream resumed
    assert (at.requests, at.failed, at.gaps) == (2, 1, 3)
    assert at.ttft_p50_ms == pytest.approx(200.0)
    assert at.itl_p50_ms == pytest.approx(20.0) and at.itl_p99_ms == pytest.approx(588.4)          # 10, 20, 600
    empty = bins[1.0]
    assert (empty.requests, empty.gaps) == (0, 0) and math.isnan(empty.ttft_p99_ms) and math.isnan(empty.itl_p50_ms)
    assert (bins[2.0].requests, bins[2.0].itl_p99_ms) == (1, pytest.approx(8.0))


def test_half_second_bins_and_a_bad_bin():
    bins = bin_tokens(RECORDS, T0, bin_s=0.5)
    assert bins[0].start_s == -1.5 and bins[-1].start_s == 2.5 and len(bins) == 9
    assert bin_tokens([], T0) == []
    with pytest.raises(ValueError, match="bin_s"):
        bin_tokens(RECORDS, T0, bin_s=0)


def test_phases_cut_at_the_marks_in_time_order_with_exact_percentiles_and_worst_bins():
    phases = token_phases(RECORDS, T0, [("recovery", 2.0), ("injection", 0.0)], start_s=-2.0, end_s=3.0)
    assert [(p.name, p.start_s, p.end_s) for p in phases] == [
        ("before injection", -2.0, 0.0), ("from injection", 0.0, 2.0), ("from recovery", 2.0, 3.0)]
    before, during, after = phases
    assert (before.requests, before.failed, before.gaps) == (3, 0, 3)
    assert before.ttft_p50_ms == pytest.approx(20.0) and before.itl_p99_ms == pytest.approx(9.9)
    assert (before.worst_ttft_bin_s, before.worst_ttft_p99_ms) == (-2.0, pytest.approx(29.8))
    assert (during.requests, during.failed, during.gaps) == (2, 1, 3)
    assert during.itl_p99_ms == pytest.approx(588.4)
    assert (during.worst_itl_bin_s, during.worst_itl_p99_ms) == (0.0, pytest.approx(588.4))
    assert (after.requests, after.ttft_p99_ms, after.gaps) == (1, pytest.approx(40.0), 1)


def test_a_mark_outside_the_span_cuts_nothing():
    (only,) = token_phases(RECORDS, T0, [("rollback", 9.0)], start_s=-2.0, end_s=3.0)
    assert (only.name, only.requests, only.gaps) == ("measured span", 6, 7)


def test_a_phase_shorter_than_a_bin_has_the_worst_bin_it_overlaps():
    phases = token_phases(RECORDS, T0, [("injection", 0.0), ("recovery", 0.3)], start_s=-2.0, end_s=3.0)
    short = phases[1]
    assert (short.name, short.start_s, short.end_s, short.requests, short.gaps) == ("from injection", 0.0, 0.3, 1, 3)
    assert (short.worst_itl_bin_s, short.worst_itl_p99_ms) == (0.0, pytest.approx(588.4))
    assert (phases[2].worst_itl_bin_s, phases[2].worst_itl_p99_ms) == (0.0, pytest.approx(588.4))  # bin 0 spans the mark
