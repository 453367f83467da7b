"""Regression verdicts on synthetic rounds: paired and unpaired tests, Holm, too little data, chaos rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.measure.regression import (
    RULE,
    Rounds,
    Rules,
    check_failed_requests,
    check_rounds,
    judge_family,
    judge_single,
)
from harness.measure.stats import fisher_greater, holm_adjust, paired_log_t, welch_log_t


def _rounds(values, pairs=None) -> Rounds:
    values = tuple(float(v) for v in values)
    return Rounds(values, tuple(pairs) if pairs is not None else (None,) * len(values), float(np.median(values)))


def _paired(baseline, current) -> tuple[Rounds, Rounds]:
    pairs = range(1, len(baseline) + 1)
    return _rounds(baseline, pairs), _rounds(current, pairs)


def _verdict(baseline: Rounds, current: Rounds, *, paired: bool, lower_is_better: bool = True, history=()) -> str:
    finding = check_rounds("p50_ms", baseline, current, lower_is_better=lower_is_better, paired=paired, history=history)
    return judge_family([finding])[0].verdict


# ----- the tests themselves against scipy -----------------------------------------------------------

def test_paired_log_t_is_scipy_paired_t_on_logs():
    rng = np.random.default_rng(3)
    b = rng.lognormal(4.0, 0.05, size=8)
    c = b * rng.lognormal(0.05, 0.02, size=8)
    result = paired_log_t(b, c)
    assert result.p_value == pytest.approx(sps.ttest_rel(np.log(c), np.log(b)).pvalue)
    assert result.log_ratio == pytest.approx(float(np.mean(np.log(c / b))))


def test_welch_log_t_is_scipy_welch_on_logs_and_a_history_only_widens_it():
    b, c = [60.0, 61.5, 59.8, 60.7], [63.0, 64.1, 62.5, 63.3, 64.0]
    plain = welch_log_t(b, c)
    assert plain.p_value == pytest.approx(sps.ttest_ind(np.log(c), np.log(b), equal_var=False).pvalue)
    assert welch_log_t(b, c, min_se=1e-9).p_value == plain.p_value  # a narrower outside estimate is ignored
    assert welch_log_t(b, c, min_se=0.05, min_se_df=3).p_value > plain.p_value


def test_fisher_and_holm_match_their_definitions():
    assert fisher_greater(1, 100, 10, 100) == pytest.approx(
        sps.fisher_exact([[10, 90], [1, 99]], alternative="greater").pvalue)
    # Holm: sorted p times (m - rank), made monotone, capped at 1, returned in input order
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm_adjust([]) == []


# ----- load metrics on rounds ------------------------------------------------------------------------

@pytest.mark.parametrize("paired", [True, False])
def test_identical_rounds_are_no_change(paired):
    values = [60.2, 61.0, 59.7, 60.5, 60.9]
    base, cur = _paired(values, values) if paired else (_rounds(values), _rounds(values))
    assert _verdict(base, cur, paired=paired) == "no change"


@pytest.mark.parametrize("paired", [True, False])
def test_ten_percent_slower_with_small_noise_is_regressed(paired):
    rng = np.random.default_rng(7)
    base = 60.0 * rng.lognormal(0.0, 0.01, size=6)
    cur = base * 1.10 * rng.lognormal(0.0, 0.01, size=6)
    b, c = _paired(base, cur) if paired else (_rounds(base), _rounds(cur))
    finding = judge_family([check_rounds("p50_ms", b, c, lower_is_better=True, paired=paired)])[0]
    assert finding.verdict == "regressed" and finding.change == pytest.approx(0.10, abs=0.03)
    assert ("paired t" if paired else "Welch") in finding.reason and "Holm-adjusted" in finding.reason
    faster = _rounds(base * 1.1), _rounds(base)  # the same shift the other way is an improvement
    assert _verdict(*faster, paired=False) == "improved"


def test_throughput_falling_is_the_worse_direction():
    base, cur = _rounds([100, 101, 99, 100.5]), _rounds([80, 81, 79.5, 80.2])
    assert _verdict(base, cur, paired=False, lower_is_better=False) == "regressed"


def test_significant_but_below_min_change_is_no_change():
    base = [60.0, 60.1, 59.9, 60.05, 59.95, 60.0]
    cur = [v * 1.02 for v in base]  # +2%: beyond noise, under the 5% that matters
    finding = judge_family([check_rounds("p50_ms", *_paired(base, cur), lower_is_better=True, paired=True)])[0]
    assert finding.verdict == "no change" and "beyond noise but small" in finding.reason


@pytest.mark.parametrize("paired", [True, False])
def test_two_rounds_are_inconclusive_saying_how_to_get_more(paired):
    base, cur = [60.0, 60.5], [90.0, 91.0]  # +50%, but two rounds cannot tell it from noise
    b, c = _paired(base, cur) if paired else (_rounds(base), _rounds(cur))
    finding = check_rounds("p50_ms", b, c, lower_is_better=True, paired=paired)
    assert finding.verdict == "inconclusive" and finding.p_value is None
    assert "--rounds" in finding.reason and finding.change == pytest.approx(0.5, abs=0.02)


def test_a_run_without_rounds_is_inconclusive_never_judged_on_windows():
    single = Rounds(headline=60.0)  # a plain `harness load` run: one headline, no rounds
    finding = check_rounds("p50_ms", single, Rounds(headline=90.0), lower_is_better=True)
    assert finding.verdict == "inconclusive" and "neither run has rounds" in finding.reason
    assert "harness load --rounds 5" in finding.reason and "harness bench ab" in finding.reason


def test_paired_runs_pair_by_pair_id_not_position():
    base = _rounds([60, 70, 80, 90], pairs=[1, 2, 3, 4])
    cur = _rounds([99, 66, 77, 88], pairs=[4, 1, 2, 3])  # every pair exactly +10%, listed out of order
    finding = judge_family([check_rounds("p50_ms", base, cur, lower_is_better=True, paired=True)])[0]
    assert finding.verdict == "regressed" and finding.change == pytest.approx(0.10)


def test_a_history_of_noisy_baselines_widens_the_noise():
    base, cur = _rounds([60.0, 60.2, 59.9, 60.1]), _rounds([64.0, 64.1, 63.9, 64.2])  # +6.6%, tight rounds
    assert _verdict(base, cur, paired=False) == "regressed"
    history = [55.0, 66.0, 61.0]  # earlier runs of the same build wandered by +-10%
    finding = judge_family([check_rounds("p50_ms", base, cur, lower_is_better=True, history=history)])[0]
    assert finding.verdict == "inconclusive" and "noise widened by 3 history run(s)" in finding.reason


def test_with_a_history_a_run_without_rounds_is_judged_at_run_level():
    history = [60.5, 59.6, 60.2, 59.9]
    finding = check_rounds("p50_ms", Rounds(headline=60.0), Rounds(headline=75.0), lower_is_better=True,
                           history=history)
    assert judge_family([finding])[0].verdict == "regressed" and "run level" in finding.reason
    assert check_rounds("p50_ms", Rounds(headline=60.0), Rounds(headline=75.0), lower_is_better=True,
                        history=history[:1]).verdict == "inconclusive"


def test_holm_controls_the_family_of_a_part():
    # p50 alone would pass alpha; with p99 in the family it must pass alpha/2
    base = [60.0, 60.3, 59.8, 60.1]
    cur = [63.6, 62.9, 65.5, 63.1]  # +5.5%
    p50 = check_rounds("p50_ms", *_paired(base, cur), lower_is_better=True, paired=True)
    p99 = check_rounds("p99_ms", *_paired([90, 95, 85, 92], [91, 94, 86, 93]), lower_is_better=True, paired=True)
    assert 0.005 < p50.p_value < 0.01 and p50.p_value == p50.p_worse  # one-sided: is it worse?
    alone = judge_family([check_rounds("p50_ms", *_paired(base, cur), lower_is_better=True, paired=True)])[0]
    assert alone.verdict == "regressed"
    judged = judge_family([p50, p99])
    assert judged[0].verdict == "inconclusive" and judged[0].p_adjusted == pytest.approx(2 * p50.p_value)
    assert "more rounds would tell" in judged[0].reason and judged[1].verdict == "no change"


def test_a_large_change_within_the_noise_is_inconclusive_not_no_change():
    base, cur = _paired([60.0, 75.0, 62.0, 64.0], [118.0, 112.0, 120.0, 500.0])  # one erratic pair
    finding = judge_family([check_rounds("p50_ms", base, cur, lower_is_better=True, paired=True)])[0]
    assert finding.change > 0.5 and finding.p_value > 0.01
    assert finding.verdict == "inconclusive" and "within run-to-run noise" in finding.reason


def test_identical_builds_rarely_flag_over_many_simulated_sessions():
    # 2000 A/A sessions of 5 pairs with 3% noise per round: family-wise false alarms stay under alpha
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(2000):
        base = 60.0 * rng.lognormal(0.0, 0.03, size=(2, 5))
        cur = 60.0 * rng.lognormal(0.0, 0.03, size=(2, 5))
        findings = [check_rounds(m, *_paired(base[i], cur[i]), lower_is_better=True, paired=True)
                    for i, m in enumerate(("p50_ms", "p99_ms"))]
        flagged += any(f.verdict == "regressed" for f in judge_family(findings))
    assert flagged / 2000 <= 0.01


# ----- chaos cells -----------------------------------------------------------------------------------

def test_ttr_that_clearly_grew_is_regressed_and_the_same_is_not():
    grew = judge_single("chaos/pod-kill/single:ttr_s", 1.8, 7.0)
    assert grew.verdict == "regressed" and "max(2 s, 50% of the baseline)" in grew.reason
    assert judge_single("ttr_s", 1.8, 2.6).verdict == "no change"  # +0.8 s: under the 2 s floor
    assert judge_single("ttr_s", 10.0, 14.0).verdict == "no change"  # +4 s: under 50% of 10 s
    assert judge_single("ttr_s", 10.0, 16.0).verdict == "regressed"
    assert judge_single("ttr_s", 7.0, 1.8).verdict == "improved"


def test_a_cell_that_no_longer_recovers_is_regressed():
    finding = judge_single("ttr_s", 1.8, None, missing="did not recover")
    assert finding.verdict == "regressed" and "did not recover" in finding.reason
    assert judge_single("ttr_s", None, None, missing="did not recover").verdict == "no change"


def test_a_history_sets_the_single_number_bound():
    rules = Rules(floor_s=0.5)
    steady = judge_single("ttr_s", 2.0, 3.0, history=[2.1, 1.9, 2.0], rules=rules)
    assert steady.verdict == "regressed" and "prediction bound" in steady.reason
    wandering = judge_single("ttr_s", 2.0, 3.0, history=[1.0, 3.5, 2.5], rules=rules)
    assert wandering.verdict == "no change"


def test_failed_requests_need_fisher_and_a_minimum_increase():
    worse = judge_family([check_failed_requests("failed_fraction", 2, 200, 30, 200)])[0]
    assert worse.verdict == "regressed" and "Fisher" in worse.reason
    same = judge_family([check_failed_requests("failed_fraction", 36, 79, 38, 80)])[0]
    assert same.verdict == "no change"
    tiny = judge_family([check_failed_requests("failed_fraction", 0, 100_000, 100, 100_000)])[0]
    assert tiny.verdict == "no change" and "beyond noise but small" in tiny.reason  # 0.1 points < 2 points
    assert check_failed_requests("failed_fraction", 0, 0, 3, 10).verdict == "inconclusive"


def test_regressions_are_one_sided_and_improvements_a_family_of_their_own():
    base, cur = _paired([60.0, 60.3, 59.8, 60.1, 60.2], [66.1, 66.5, 65.7, 66.0, 66.3])
    worse = check_rounds("p50_ms", base, cur, lower_is_better=True, paired=True)
    assert worse.p_worse == pytest.approx(paired_log_t(base.values, cur.values).p_value / 2)
    assert worse.p_better == pytest.approx(1 - worse.p_worse)
    better = check_rounds("p50_ms", cur, base, lower_is_better=True, paired=True)
    assert better.p_worse > 0.99 and judge_family([better])[0].verdict == "improved"


def test_rules_are_validated_and_the_rule_is_stated():
    with pytest.raises(ValueError, match="alpha=0"):
        Rules(alpha=0).validate()
    with pytest.raises(ValueError, match="min_change=-1"):
        Rules(min_change=-1).validate()
    assert "Holm" in RULE and "inconclusive" in RULE and math.isfinite(Rules().alpha)
