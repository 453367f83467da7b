"""`harness.measure.tokens`: what a good request is, goodput over every request sent, percentiles through
`harness.measure.percentiles` (ITL over every gap of the successful requests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.measure.tokens import has_tokens, is_good, summarize_tokens
from harness.request_records import RequestRecord
from harness.slo import Slo, TokenSlo
from harness.errors import ConfigError


def _record(t: float, latency: float, *, ok: bool = True, ttft: float = math.nan, tpot: float = math.nan,
            tokens: int = 0, gaps: tuple[float, ...] = ()) -> RequestRecord:
    return RequestRecord(t, t, latency, 200, ok, "" if ok else "stream cut", "rate", "", ttft, tpot, tokens, gaps)


RECORDS = [
    _record(0.0, 100.0, ttft=40.0, tpot=20.0, tokens=4, gaps=(10.0, 20.0, 30.0)),
    _record(1.0, 300.0, ttft=90.0, tpot=70.0, tokens=4, gaps=(60.0, 70.0, 80.0)),
    _record(2.0, 50.0, ttft=50.0, tokens=1),  # one token: TPOT undefined
    _record(3.0, 60.0, ok=False, ttft=20.0, tokens=2, gaps=(1.0,)),  # cut: a miss, its figures left out
]


def test_goodput_counts_every_request_and_a_failure_is_a_miss():
    summary = summarize_tokens(RECORDS, Slo(), TokenSlo(ttft_ms=60.0, tpot_ms=50.0))
    assert summary.requests == 4 and summary.ok == 3
    assert summary.good == 2  # the first, and the one-token answer (no TPOT to exceed); not the cut one
    assert summary.good_share == 0.5
    assert summary.duration_s == pytest.approx(3.06) and summary.goodput_rps == pytest.approx(2 / 3.06)
    assert summary.output_tokens == 9 and summary.output_tokens_per_s == pytest.approx(9 / 3.06)
    assert summarize_tokens(RECORDS, Slo(p99_ms=100.0)).good == 2  # e2e bound: the SLO's p99_ms when unset
    assert summarize_tokens(RECORDS, Slo(), TokenSlo(e2e_ms=1000.0)).good == 3


def test_token_percentiles_are_numpys_over_successful_requests_and_every_gap():
    summary = summarize_tokens(RECORDS, Slo(), qs=(50, 99))
    assert summary.ttft_ms[50.0] == np.percentile([40.0, 90.0, 50.0], 50)
    assert summary.tpot_ms[99.0] == pytest.approx(np.percentile([20.0, 70.0], 99), rel=1e-12)
    assert summary.itl_ms[50.0] == np.percentile([10, 20, 30, 60, 70, 80], 50)  # pooled, not per-request means
    data = summary.to_dict()
    assert data["itl_p99_ms"] == summary.itl_ms[99.0] and data["mean_itl_ms"] == 45.0 and data["good"] == 3


def test_a_missing_ttft_misses_a_ttft_bound_and_token_free_records_are_not_generative():
    bounds = TokenSlo(ttft_ms=100.0).bounds(Slo())
    assert not is_good(_record(0.0, 10.0, tokens=0), bounds) and is_good(_record(0.0, 10.0, ttft=5.0), bounds)
    assert not has_tokens([RequestRecord(0.0, 0.0, 5.0, 200, True)]) and has_tokens(RECORDS)
    with pytest.raises(ConfigError, match="tpot_ms=0"):
        TokenSlo(tpot_ms=0)
