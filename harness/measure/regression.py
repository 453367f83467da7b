"""Regression verdicts: a change counts when it is beyond run-to-run noise AND large enough to matter.

Definitions (`harness compare`, `harness bench ab`, the report's comparison and the pytest scenarios
quote `RULE`, which is this text's summary):

- **Repeats are rounds, never windows.** A load metric (p50_ms, p99_ms; throughput_rps only under
  closed-loop load, since open-loop throughput is the offered rate) has one value per *round*: an
  independent measurement on a fresh deployment (`harness.load.rounds`). The windows inside one run
  share its deployment and its moment on the machine, so their spread is not run-to-run noise and is
  never used as such.
- **Paired** (both runs come from one interleaved A/B session: same session id, rounds matched by
  pair id): per pair ``d_i = ln(current_i / baseline_i)``, and the one-sample t-test of mean(d) = 0.
  A paired t on log-ratios rather than Wilcoxon's signed-rank test: with n pairs Wilcoxon's exact
  p-value cannot fall below 2 / 2**n, so with fewer than ~10 pairs it can never pass alpha = 0.01 after
  the Holm correction, whatever the data; the t-test can, and log-ratios of latency figures are close
  to symmetric (an outlying pair widens the t interval, so it errs towards "no change").
  Change = ``exp(median d) - 1``.
- **Unpaired** (a saved baseline): Welch's t-test on the logs of each side's rounds. Change =
  ``median(current rounds) / median(baseline rounds) - 1``.
- **History** (``--history``: earlier runs of the baseline's build, used only for noise): the
  run-level values ``ln(headline)`` of the baseline and each history run give a run-to-run spread
  ``s_run`` with k degrees of freedom (k history runs); the standard error of the log change is then
  ``max(Welch's, s_run * sqrt(2))``: a history can widen the noise, never narrow it. With at least
  2 history runs a side without rounds is judged on that run-level spread alone. A paired comparison
  ignores the history (pairing already removes the drift between runs).
- **Too little data**: fewer than `MIN_ROUNDS` rounds (pairs) on a side and no usable history gives
  *inconclusive*, naming what is missing and how to get it.
- **One-sided, Holm per part**: a regression is a one-sided question (is it worse?), so each metric
  gets the one-sided p-value of "worse" (half the two-sided t p-value when the estimate points that
  way); those of one part (a load run's metrics; a chaos cell's failed-request test) are Holm-adjusted
  together, so the chance of any false regression in a part stays at alpha. "Improved" is judged the
  same way on the one-sided p-values of "better", as a separate family (it never fails anything).
- **Verdict**: *regressed* when the Holm-adjusted p of "worse" < alpha (default 0.01) AND the change
  is at least ``min_change`` (default 5%) in the worse direction; *improved* the same way in the better
  direction;
  *inconclusive* when the change is at least ``min_change`` but not beyond the noise (the rounds cannot
  tell; more would); otherwise *no change*.
- **Single numbers** (a chaos cell per fault x topology: time to recover ``ttr_s``, client-side outage
  ``outage_s``, unavailability ``unavailability_s``): regressed when ``current - baseline >
  max(floor_s, ratio x baseline)`` (defaults 2 s and 50%); improved when it shrank by as much. With at
  least 2 history values the bound is a one-sided prediction bound of the baseline's build:
  ``mean + max(floor_s, t(1 - alpha, k - 1) * s * sqrt(1 + 1/k))`` over the k baseline and history
  values. A cell that recovered in the baseline and not now is regressed.
- **Failed requests** (failed_requests / total_requests of a chaos cell): Fisher's exact test, one-sided
  (the current proportion is greater), in the cell's Holm family at alpha, AND the proportion grew by at
  least ``min_failed_increase`` (default 2 percentage points).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from scipy import stats as sps

from harness.measure.stats import (
    IMPROVED,
    INCONCLUSIVE,
    NO_CHANGE,
    REGRESSED,
    ChangeTest,
    fisher_greater,
    holm_adjust,
    paired_log_t,
    welch_log_t,
)

__all__ = [
    "MIN_ROUNDS",
    "MIN_HISTORY_RUNS",
    "RULE",
    "Rules",
    "Rounds",
    "Finding",
    "check_rounds",
    "judge_single",
    "check_failed_requests",
    "judge_family",
]

MIN_ROUNDS = 3  # rounds (or pairs) a side below which noise cannot be estimated
MIN_HISTORY_RUNS = 2  # history runs (besides the baseline) that make a run-level spread
RULE = ("regressed = Holm-adjusted one-sided p of 'worse' < alpha over the part's metrics (paired t on per-pair log-ratios for "
        "interleaved runs, else Welch's t on the logs of rounds, widened by the spread of --history runs) AND a "
        "median change >= min_change in the worse direction; fewer than 3 rounds a side, or a change >= min_change "
        "within the noise: inconclusive; chaos "
        "TTR/outage/unavailability: grew by more than max(floor_s, ratio x baseline); failed requests: Fisher's "
        "exact test at alpha and an increase >= min_failed_increase (harness.measure.regression)")


@dataclass(frozen=True)
class Rules:
    """The thresholds a verdict depends on (see the module docstring)."""

    alpha: float = 0.01
    min_change: float = 0.05
    floor_s: float = 2.0
    ratio: float = 0.5
    min_failed_increase: float = 0.02
    min_rounds: int = MIN_ROUNDS

    def validate(self) -> None:
        """Raise ValueError naming the first threshold out of range."""
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha={self.alpha!r}: must be between 0 and 1 (exclusive)")
        for name in ("min_change", "floor_s", "ratio", "min_failed_increase"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 0")
        if self.min_rounds < 2:
            raise ValueError(f"min_rounds={self.min_rounds!r}: must be at least 2")


@dataclass(frozen=True)
class Rounds:
    """One side's values of a metric: per round (with pair ids when interleaved) and the run's headline."""

    values: tuple[float, ...] = ()
    pairs: tuple[int | None, ...] = ()
    headline: float | None = None

    @property
    def centre(self) -> float | None:
        """The median over rounds, else the headline."""
        return statistics.median(self.values) if self.values else self.headline


@dataclass
class Finding:
    """One row of a comparison: the figures, the evidence and, once judged, the verdict with its reason."""

    metric: str
    baseline: float | None
    current: float | None
    change: float | None
    verdict: str = NO_CHANGE
    reason: str = ""
    test: str = "none"
    p_value: float | None = None  # one-sided, in the direction of the change (worse or better)
    p_adjusted: float | None = None  # Holm-adjusted over the part's family of that direction
    p_worse: float | None = None  # one-sided p of "worse" (a regression), whatever the direction seen
    p_better: float | None = None  # one-sided p of "better"
    large: bool = False  # practically large (the min_change or min_failed_increase rule)
    worse: bool = False  # in the worse direction
    evidence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def _inconclusive(metric: str, baseline: Rounds, current: Rounds, why: str) -> Finding:
    b, c = baseline.centre, current.centre
    change = (c / b - 1.0) if b and c is not None else None
    return Finding(metric, b, c, change, verdict=INCONCLUSIVE, reason=why)


def _missing_rounds(baseline: Rounds, current: Rounds, need: int, history: int) -> str:
    counts = (("baseline", len(baseline.values)), ("current", len(current.values)))
    if not any(n for _, n in counts):
        have = "neither run has rounds (the windows of one run are not repeats)"
    else:
        have = " and ".join(f"the {name} has {n or 'no'} round(s)" for name, n in counts if n < need)
    extra = f", have {history}" if history else ""
    return (f"{have}; need {need} rounds a side (or {MIN_HISTORY_RUNS} --history runs{extra}): rerun with "
            f"harness load --rounds 5, or measure both builds interleaved with harness bench ab")


def _paired(baseline: Rounds, current: Rounds) -> tuple[list[float], list[float]]:
    b = {p: v for p, v in zip(baseline.pairs, baseline.values) if p is not None}
    c = {p: v for p, v in zip(current.pairs, current.values) if p is not None}
    common = sorted(set(b) & set(c))
    return [b[p] for p in common], [c[p] for p in common]


def check_rounds(
    metric: str, baseline: Rounds, current: Rounds, *, lower_is_better: bool, paired: bool = False,
    history: Sequence[float] = (), rules: Rules = Rules(),
) -> Finding:
    """Return the evidence for one load metric (p-value, change, direction); `judge_family` gives the verdict.

    ``history`` holds the headline value of each history run. Inconclusive findings carry their
    verdict and the reason already.
    """
    need = rules.min_rounds
    if paired:
        b, c = _paired(baseline, current)
        if len(b) < need:
            return _inconclusive(metric, baseline, current,
                                 f"only {len(b)} pair(s) measured on both sides; need {need}: rerun harness bench ab "
                                 f"with more --rounds")
        result = paired_log_t(b, c)
        diffs = [math.log(max(y, 1e-9) / max(x, 1e-9)) for x, y in zip(b, c)]
        change = math.exp(statistics.median(diffs)) - 1.0
        evidence = f"{len(b)} pairs"
    else:
        run_level = _run_level(baseline, current, history)
        enough = len(baseline.values) >= need and len(current.values) >= need
        if enough:
            min_se, df = (run_level[1], run_level[2]) if run_level else (0.0, None)
            result = welch_log_t(baseline.values, current.values, min_se=min_se, min_se_df=df)
            evidence = f"{len(baseline.values)} vs {len(current.values)} rounds"
        elif run_level is not None:
            estimate, se, df = run_level
            p = float(2.0 * sps.t.sf(abs(estimate) / se, df)) if se > 0 else (1.0 if estimate == 0 else 0.0)
            result = ChangeTest("t on run-level logs, noise from the history", p, estimate, 1, 1)
            evidence = f"run level, {len(history)} history run(s)"
        else:
            return _inconclusive(metric, baseline, current, _missing_rounds(baseline, current, need, len(history)))
        b_centre, c_centre = baseline.centre, current.centre
        change = (c_centre / b_centre - 1.0) if b_centre else math.inf
        if history:
            evidence += f", noise widened by {len(history)} history run(s)" if result.test.endswith("history") \
                else f", {len(history)} history run(s) (narrower than the rounds' spread)"
    worse = change > 0 if lower_is_better else change < 0
    # the t statistic is symmetric: its two-sided p splits into the two one-sided ones by the estimate's sign
    toward_worse = result.log_ratio > 0 if lower_is_better else result.log_ratio < 0
    p_worse = result.p_value / 2.0 if toward_worse else 1.0 - result.p_value / 2.0
    return Finding(metric, baseline.centre, current.centre, change, test=result.test,
                   p_value=p_worse if worse else 1.0 - p_worse, p_worse=p_worse, p_better=1.0 - p_worse,
                   large=abs(change) >= rules.min_change, worse=worse, evidence=evidence)


def _run_level(baseline: Rounds, current: Rounds, history: Sequence[float]) -> tuple[float, float, float] | None:
    """Return (log change, standard error, df) from the run-level spread of baseline + history, or None."""
    values = [baseline.centre, *history]
    if len(history) < MIN_HISTORY_RUNS or any(v is None or v <= 0 for v in values) or not current.centre:
        return None
    logs = [math.log(float(v)) for v in values]  # type: ignore[arg-type]
    spread = statistics.stdev(logs)
    return math.log(current.centre / float(baseline.centre)), spread * math.sqrt(2.0), float(len(history))  # type: ignore[arg-type]


def judge_single(
    metric: str, baseline: float | None, current: float | None, *, history: Sequence[float] = (),
    rules: Rules = Rules(), missing: str = "not measured",
) -> Finding:
    """Return the verdict on one number per run (seconds; lower is better) by the threshold rule of the
    module docstring; ``missing`` says what an absent value means (e.g. "did not recover")."""
    if baseline is None or current is None:
        if baseline is None and current is None:
            return Finding(metric, None, None, None, verdict=NO_CHANGE, reason=f"{missing} in either run")
        if current is None:
            return Finding(metric, baseline, None, None, verdict=REGRESSED,
                           reason=f"{missing} now; the baseline measured {baseline:.2f} s")
        return Finding(metric, None, current, None, verdict=IMPROVED,
                       reason=f"the baseline: {missing}; now {current:.2f} s")
    change = (current - baseline) / baseline if baseline else (0.0 if current == baseline else math.inf)
    known = [float(v) for v in (baseline, *history) if v is not None]
    if len(known) >= 1 + MIN_HISTORY_RUNS:
        k = len(known)
        mean, spread = statistics.fmean(known), statistics.stdev(known)
        margin = max(rules.floor_s, float(sps.t.ppf(1.0 - rules.alpha, k - 1)) * spread * math.sqrt(1.0 + 1.0 / k))
        rule = (f"over {mean + margin:.2f} s, the one-sided prediction bound (mean {mean:.2f} + {margin:.2f} s) of the "
                f"baseline and {k - 1} history run(s)")
        worse, better = current > mean + margin, current < mean - margin
    else:
        margin = max(rules.floor_s, rules.ratio * baseline)
        rule = f"it grows by more than max({rules.floor_s:g} s, {rules.ratio:.0%} of the baseline) = {margin:.2f} s"
        worse, better = current - baseline > margin, baseline - current > margin
    verdict = REGRESSED if worse else IMPROVED if better else NO_CHANGE
    return Finding(metric, baseline, current, change, verdict=verdict, test="threshold", large=worse or better,
                   worse=worse, reason=f"{baseline:.2f} s -> {current:.2f} s; regressed when {rule}")


def check_failed_requests(
    metric: str, failed_baseline: int, total_baseline: int, failed_current: int, total_current: int, *,
    rules: Rules = Rules(),
) -> Finding:
    """Return the evidence on a failed-request proportion (Fisher's exact, one-sided); `judge_family`
    gives the verdict. Without requests on a side the finding is inconclusive."""
    if total_baseline <= 0 or total_current <= 0:
        return Finding(metric, None, None, None, verdict=INCONCLUSIVE,
                       reason=f"no requests counted (baseline {total_baseline}, current {total_current})")
    b, c = failed_baseline / total_baseline, failed_current / total_current
    p = fisher_greater(failed_baseline, total_baseline, failed_current, total_current)
    return Finding(metric, b, c, c - b, test="Fisher's exact (one-sided)", p_value=p, p_worse=p, p_better=1.0,
                   large=c - b >= rules.min_failed_increase, worse=c > b,
                   evidence=f"{failed_baseline}/{total_baseline} -> {failed_current}/{total_current} failed",
                   extra={"change_unit": "points"})


def judge_family(findings: list[Finding], rules: Rules = Rules()) -> list[Finding]:
    """Holm-adjust the p-values of the tested findings of one part and set each verdict and reason
    (module docstring); findings already judged (threshold rules, inconclusive) are left as they are."""
    tested = [f for f in findings if f.p_worse is not None and f.test != "threshold"]
    worse_adjusted = holm_adjust([f.p_worse for f in tested])  # type: ignore[misc]
    better_adjusted = holm_adjust([f.p_better if f.p_better is not None else 1.0 for f in tested])
    for finding, worse_p, better_p in zip(tested, worse_adjusted, better_adjusted):
        adjusted = worse_p if finding.worse else better_p
        finding.p_adjusted = adjusted
        significant = adjusted < rules.alpha
        if significant and finding.large:
            finding.verdict, why = (REGRESSED if finding.worse else IMPROVED), "beyond noise and large"
        elif significant:
            finding.verdict, why = NO_CHANGE, "beyond noise but small"
        elif finding.large:  # a large change the rounds cannot tell from their noise: not "no change"
            finding.verdict, why = INCONCLUSIVE, "large but within run-to-run noise (more rounds would tell)"
        else:
            finding.verdict, why = NO_CHANGE, "small and within run-to-run noise"
        size = (f"change {100 * finding.change:+.1f} points (min +{100 * rules.min_failed_increase:g})"
                if finding.test.startswith("Fisher") else f"median change {finding.change:+.1%} (min {rules.min_change:.0%})")
        finding.reason = (f"{why}: {size}; {finding.test}, {finding.evidence}, p={finding.p_value:.3g}, "
                          f"Holm-adjusted p={adjusted:.3g} over {len(tested)} test(s) (alpha {rules.alpha:g})")
    return findings
