"""The goodput search: the max rate at which a share of requests meets the token SLO (TTFT and ITL bounds),
against a simulated generative service whose TTFT and ITL knees are known in closed form."""

from __future__ import annotations

import math

import pytest

from harness.errors import ConfigError
from harness.sweep.search import CLEAR_FAIL, FAIL, PASS, PointMeasurement, SearchSettings, classify, search_max_rate
from harness.sweep.simulated import SimulatedLlm

SHARE, TOL = 0.9, 0.05


@pytest.mark.parametrize("ttft_ms, itl_ms, binding", [(150.0, 1000.0, "ttft"), (2000.0, 25.0, "itl")])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_search_finds_the_goodput_knee_within_its_tolerance(ttft_ms, itl_ms, binding, seed):
    sim = SimulatedLlm(capacity_rps=60.0, seed=seed)
    knee = sim.knee_rps(ttft_ms, itl_ms, SHARE)
    other = sim.knee_rps(ttft_ms if binding == "itl" else 1e9, itl_ms if binding == "ttft" else 1e9, SHARE)
    assert 0 < knee < other  # the bound named binds, the other lies higher
    assert sim.good_share_at(knee * 0.99, ttft_ms, itl_ms) >= SHARE > sim.good_share_at(knee * 1.01, ttft_ms, itl_ms)
    settings = SearchSettings(p99_ms=50.0, min_good_share=SHARE, start_rps=5.0, rel_tol=TOL)  # p99 alone would fail
    result = search_max_rate(sim.measurer(ttft_ms, itl_ms), settings)
    assert result.converged, result.detail
    assert knee * (1 - TOL - 0.02) <= result.max_rate_rps <= knee * 1.02  # the tolerance, and the share's noise
    assert result.at_max is not None and result.at_max.good_share >= SHARE
    assert len(result.probes) <= 12


def test_a_probe_passes_on_the_good_share_not_the_p99():
    settings = SearchSettings(p99_ms=100.0, min_good_share=SHARE)
    slow_but_good = PointMeasurement(20.0, 20.0, p99_ms=900.0, sent_rate_rps=20.0, good_share=0.95, goodput_rps=19.0,
                                     ttft_p99_ms=300.0, itl_p99_ms=12.0)
    verdict, why = classify(slow_but_good, settings)
    assert verdict == PASS and "good 95.0%, goodput 19.0 rps, TTFT p99 300.0 ms, ITL p99 12.0 ms" in why
    short = PointMeasurement(20.0, 20.0, p99_ms=50.0, sent_rate_rps=20.0, good_share=0.8)
    assert classify(short, settings)[0] == FAIL and "good share < 90%" in classify(short, settings)[1]
    assert classify(PointMeasurement(20.0, 20.0, p99_ms=50.0, sent_rate_rps=20.0, good_share=0.3), settings)[0] == CLEAR_FAIL
    no_tokens = PointMeasurement(20.0, 20.0, p99_ms=50.0, sent_rate_rps=20.0)  # no token figure: no good request
    assert classify(no_tokens, settings)[0] == CLEAR_FAIL
    assert classify(slow_but_good, SearchSettings(p99_ms=100.0))[0] != PASS  # without a share: the p99 judges


def test_a_bad_share_is_refused_naming_it():
    with pytest.raises(ConfigError, match="min_good_share=1.5"):
        search_max_rate(SimulatedLlm(10.0).measurer(100.0, 100.0), SearchSettings(min_good_share=1.5))
    assert math.isnan(PointMeasurement(1.0, 1.0, 1.0).good_share)


def test_an_itl_bound_judges_every_gap_of_a_request():
    from harness.measure.tokens import is_good, summarize_tokens
    from harness.request_records import RequestRecord
    from harness.slo import Slo, TokenSlo

    def record(*gaps: float) -> RequestRecord:
        return RequestRecord(0.0, 0.0, 100.0, 200, True, ttft_ms=20.0, output_tokens=len(gaps) + 1, itl_ms=gaps)

    bounds = TokenSlo(itl_ms=30.0).bounds(Slo())
    assert bounds["itl_ms"] == 30.0 and "itl_ms" not in TokenSlo().bounds(Slo())
    assert is_good(record(10.0, 30.0), bounds) and not is_good(record(10.0, 31.0), bounds) and is_good(record(), bounds)
    assert summarize_tokens([record(10.0), record(50.0)], Slo(), TokenSlo(itl_ms=30.0)).good_share == 0.5
    with pytest.raises(ConfigError, match="itl_ms=0"):
        TokenSlo(itl_ms=0)
