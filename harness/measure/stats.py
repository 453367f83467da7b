"""Statistics: intervals and stability of repeated windows, proportions, and the tests that compare runs.

Definitions (reports quote these):

- **Repeats**: one number per measurement window (a window's throughput, or its p99), for a sweep
  point's confidence interval and stability. Windows of one run share its deployment and its moment
  on the machine: they say how steady a run was, never whether two runs differ (that takes rounds:
  `harness.measure.regression`).
- **Confidence intervals** (95% unless configured):
  - *mean*: Student's t-interval, ``mean +/- t(1 - a/2, n - 1) * s / sqrt(n)``.
  - *median*: distribution-free, from binomial order statistics: ``[x(j), x(n-j+1)]`` with the
    largest ``j`` whose coverage ``1 - 2 * P(Binom(n, 1/2) <= j - 1)`` is at least the confidence
    (for n = 10 at 95%: ``[x(2), x(9)]``, coverage 97.9%). With fewer than 6 repeats no pair reaches
    95%; the interval is then ``[min, max]`` and its achieved confidence (e.g. 75% for n = 3) is
    stated, never rounded up.
  - *bootstrap* (any statistic): percentile bootstrap with a fixed seed, so reruns agree.
  ``method="auto"`` uses the median interval when n is large enough to reach the confidence and
  the t-interval otherwise; every interval carries the method and the confidence it achieves.
- **Proportions** (a failed-request fraction, a share of bad prober samples): the Wilson score
  interval, ``(p + z^2/2n +/- z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``; unlike the normal
  approximation it stays inside [0, 1] and is not a zero-width interval at 0 or n successes, so 0
  failures of 80 requests reads as "at most 4.6%", not "0%".
- **Stable**: at least ``min_repeats`` windows and a relative CI half-width
  (``(high - low) / 2 / |estimate|``) at or under a threshold (default 5%). Sweeps repeat windows
  until stable or a cap.
- **Tests of a change between runs** (`harness.measure.regression` decides verdicts with them):
  ``paired_log_t`` is the one-sample t-test of per-pair log-ratios ``ln(current_i / baseline_i)``
  against 0; ``welch_log_t`` is Welch's t-test on the logs of two independent samples (a ratio
  test: +10% and -9.1% are the same distance); ``fisher_greater`` is Fisher's exact test, one-sided,
  that the current failure proportion exceeds the baseline's; ``holm_adjust`` returns Holm's
  step-down adjusted p-values, which keep the chance of any false alarm in a family at alpha.
  Values <= 0 are floored at ``LOG_FLOOR`` before taking logs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Literal

import numpy as np
from scipy import stats as sps

__all__ = [
    "IMPROVED",
    "REGRESSED",
    "NO_CHANGE",
    "INCONCLUSIVE",
    "Interval",
    "RepeatStats",
    "Stability",
    "mean_ci",
    "median_ci",
    "bootstrap_ci",
    "wilson_interval",
    "summarize_repeats",
    "assess_stability",
    "is_stable",
    "LOG_FLOOR",
    "ChangeTest",
    "paired_log_t",
    "welch_log_t",
    "fisher_greater",
    "holm_adjust",
]

IMPROVED = "improved"
REGRESSED = "regressed"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"

Method = Literal["auto", "mean", "median", "bootstrap"]


def _samples(values: Iterable[float] | np.ndarray, name: str = "samples") -> np.ndarray:
    try:
        array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers ({exc})") from exc
    return array[np.isfinite(array)]


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r}: must be between 0 and 1 (exclusive)")
    return float(confidence)


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; ``confidence`` is what the method achieves."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    @property
    def relative_half_width(self) -> float:
        """Half-width over |estimate|: NaN when undefined, inf for a zero estimate with a width."""
        hw = self.half_width
        if not (math.isfinite(hw) and math.isfinite(self.estimate)):
            return math.nan
        if self.estimate == 0:
            return 0.0 if hw == 0 else math.inf
        return hw / abs(self.estimate)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: "Interval") -> bool:
        return not (self.high < other.low or other.high < self.low)

    def to_dict(self) -> dict[str, object]:
        return _json_ready(asdict(self) | {"relative_half_width": self.relative_half_width})


def _json_ready(data: dict[str, object]) -> dict[str, object]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def mean_ci(samples: Iterable[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Return the mean with its Student t-interval; bounds are NaN with fewer than 2 samples.

    Raises ValueError for a confidence outside (0, 1).
    """
    conf = _check_confidence(confidence)
    x = _samples(samples)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, conf, "t-interval of the mean", n)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + conf / 2.0, n - 1)) * sem
    return Interval(mean, mean - half, mean + half, conf, "t-interval of the mean", n)


def _order_statistic_rank(n: int, confidence: float) -> tuple[int, float]:
    """Return (j, coverage) for the interval [x(j), x(n-j+1)], j = 0 when none reaches ``confidence``."""
    best = (0, math.nan)
    for j in range(1, n // 2 + 1):
        coverage = 1.0 - 2.0 * float(sps.binom.cdf(j - 1, n, 0.5))
        if coverage + 1e-12 < confidence:
            break
        best = (j, coverage)
    return best


def median_ci(samples: Iterable[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Return the median with a distribution-free interval from binomial order statistics.

    When n is too small to reach ``confidence`` the interval is [min, max] and ``confidence`` holds
    what it achieves (1 - 2 / 2**n). Raises ValueError for a confidence outside (0, 1).
    """
    conf = _check_confidence(confidence)
    x = np.sort(_samples(samples))
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, conf, "order statistics of the median", 0)
    median = float(np.median(x))
    j, coverage = _order_statistic_rank(n, conf)
    if j == 0:
        achieved = 1.0 - 2.0 * 0.5**n if n > 1 else 0.0
        return Interval(median, float(x[0]), float(x[-1]), achieved, "min-max (too few repeats for the confidence)", n)
    return Interval(median, float(x[j - 1]), float(x[n - j]), coverage, "order statistics of the median", n)


def bootstrap_ci(
    samples: Iterable[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.median,
    confidence: float = 0.95,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Return ``statistic`` with a seeded percentile-bootstrap interval (same seed, same interval).

    Bounds are NaN with fewer than 2 samples. Raises ValueError for a bad confidence or resamples.
    """
    conf = _check_confidence(confidence)
    if resamples < 100:
        raise ValueError(f"resamples={resamples!r}: use at least 100")
    x = _samples(samples)
    n = int(x.size)
    estimate = float(statistic(x)) if n else math.nan
    if n < 2:
        return Interval(estimate, math.nan, math.nan, conf, "percentile bootstrap", n)
    rng = np.random.default_rng(seed)
    draws = x[rng.integers(0, n, size=(resamples, n))]
    values = np.array([statistic(row) for row in draws], dtype=float)
    alpha = 1.0 - conf
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Interval(estimate, float(low), float(high), conf, f"percentile bootstrap ({resamples}, seed {seed})", n)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) of a proportion ``successes / n``.

    (0.0, 1.0) when ``n`` is 0 (nothing observed: anything is possible). Raises ValueError for a
    count outside 0..n or a confidence outside (0, 1).
    """
    conf = _check_confidence(confidence)
    k, total = int(successes), int(n)
    if total < 0 or not 0 <= k <= total:
        raise ValueError(f"successes={successes!r}, n={n!r}: need 0 <= successes <= n")
    if total == 0:
        return 0.0, 1.0
    z = float(sps.norm.ppf(0.5 + conf / 2.0))
    p = k / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / total + z * z / (4.0 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _interval(x: np.ndarray, confidence: float, method: Method) -> Interval:
    if method == "mean":
        return mean_ci(x, confidence)
    if method == "median":
        return median_ci(x, confidence)
    if method == "bootstrap":
        return bootstrap_ci(x, confidence=confidence)
    if method == "auto":
        reachable = _order_statistic_rank(int(x.size), _check_confidence(confidence))[0] > 0
        return median_ci(x, confidence) if reachable else mean_ci(x, confidence)
    raise ValueError(f"method={method!r}: use auto, mean, median or bootstrap")


@dataclass(frozen=True)
class RepeatStats:
    """Median, mean and a confidence interval of repeated windows' values."""

    n: int
    median: float
    mean: float
    std: float
    ci: Interval

    def to_dict(self) -> dict[str, object]:
        """Return flat keys: n, median, mean, std, ci_low, ci_high, ci_confidence, ci_method, ..."""
        return _json_ready({
            "n": self.n, "median": self.median, "mean": self.mean, "std": self.std,
            "ci_low": self.ci.low, "ci_high": self.ci.high, "ci_confidence": self.ci.confidence,
            "ci_method": self.ci.method, "relative_half_width": self.ci.relative_half_width,
        })


def summarize_repeats(
    samples: Iterable[float] | np.ndarray, confidence: float = 0.95, method: Method = "auto"
) -> RepeatStats:
    """Return `RepeatStats` of the finite samples, the interval by ``method`` (see module docs).

    Raises ValueError for a bad confidence or method.
    """
    x = _samples(samples)
    n = int(x.size)
    return RepeatStats(
        n=n,
        median=float(np.median(x)) if n else math.nan,
        mean=float(x.mean()) if n else math.nan,
        std=float(x.std(ddof=1)) if n > 1 else math.nan,
        ci=_interval(x, confidence, method),
    )


@dataclass(frozen=True)
class Stability:
    """Whether repeated windows agree closely enough to stop repeating, and why."""

    stable: bool
    n: int
    relative_half_width: float
    max_relative_half_width: float
    reason: str


def assess_stability(
    samples: Iterable[float] | np.ndarray,
    *,
    max_relative_half_width: float = 0.05,
    min_repeats: int = 3,
    confidence: float = 0.95,
    method: Method = "mean",
) -> Stability:
    """Return a `Stability`: stable when n >= ``min_repeats`` and the CI's relative half-width is at
    or under ``max_relative_half_width``. Raises ValueError for a non-positive threshold or min_repeats < 2.
    """
    if not max_relative_half_width > 0:
        raise ValueError(f"max_relative_half_width={max_relative_half_width!r}: must be greater than zero")
    if min_repeats < 2:
        raise ValueError(f"min_repeats={min_repeats!r}: need at least 2 for an interval")
    x = _samples(samples)
    if x.size < min_repeats:
        return Stability(False, int(x.size), math.nan, max_relative_half_width, f"{x.size} of {min_repeats} repeats")
    rel = _interval(x, confidence, method).relative_half_width
    stable = math.isfinite(rel) and rel <= max_relative_half_width
    verb = "<=" if stable else ">"
    reason = f"relative CI half-width {rel:.1%} {verb} {max_relative_half_width:.1%} over {x.size} repeats"
    return Stability(stable, int(x.size), rel, max_relative_half_width, reason)


def is_stable(samples: Iterable[float] | np.ndarray, **options: Any) -> bool:
    """Return True when `assess_stability` finds the repeats stable (same options)."""
    return assess_stability(samples, **options).stable


LOG_FLOOR = 1e-9  # a zero throughput is a real collapse: floored, not dropped, before taking logs


@dataclass(frozen=True)
class ChangeTest:
    """A test's name, two-sided (or stated) p-value, the estimated log-ratio and its sample sizes."""

    test: str
    p_value: float
    log_ratio: float
    n_baseline: int
    n_current: int


def _logs(values: Iterable[float] | np.ndarray, name: str) -> np.ndarray:
    return np.log(np.maximum(_samples(values, name), LOG_FLOOR))


def _t_p_value(estimate: float, se: float, df: float) -> float:
    if se <= 0 or not math.isfinite(se):
        return 1.0 if estimate == 0 else 0.0  # no spread: identical values cannot differ, distinct ones do
    return float(2.0 * sps.t.sf(abs(estimate) / se, df))


def paired_log_t(baseline: Iterable[float], current: Iterable[float]) -> ChangeTest:
    """Return the paired t-test of ``ln(current_i / baseline_i)`` against 0 (two-sided); the inputs are
    aligned pairs. Raises ValueError for unequal lengths or fewer than 2 pairs."""
    b, c = _logs(baseline, "baseline"), _logs(current, "current")
    if b.size != c.size or b.size < 2:
        raise ValueError(f"paired samples: need equal lengths of at least 2, got {b.size} and {c.size}")
    d = c - b
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    return ChangeTest("paired t on log-ratios", _t_p_value(float(d.mean()), se, d.size - 1), float(d.mean()),
                      int(b.size), int(c.size))


def welch_log_t(baseline: Iterable[float], current: Iterable[float], *, min_se: float = 0.0,
                min_se_df: float | None = None) -> ChangeTest:
    """Return Welch's t-test on the logs of two independent samples (two-sided). A ``min_se`` (with its
    degrees of freedom ``min_se_df``) replaces the standard error when larger: an outside estimate of the
    noise (e.g. the spread of earlier runs) can widen it, never narrow it. Raises ValueError for fewer
    than 2 values a side."""
    b, c = _logs(baseline, "baseline"), _logs(current, "current")
    if b.size < 2 or c.size < 2:
        raise ValueError(f"Welch's t needs 2 values a side, got {b.size} and {c.size}")
    vb, vc = float(b.var(ddof=1)) / b.size, float(c.var(ddof=1)) / c.size
    se = math.sqrt(vb + vc)
    denominator = (vb * vb / (b.size - 1) + vc * vc / (c.size - 1))
    df = (vb + vc) ** 2 / denominator if denominator > 0 else float(b.size + c.size - 2)
    test = "Welch t on logs"
    if min_se > se:
        se, df, test = min_se, float(min_se_df or df), "Welch t on logs, noise from the history"
    estimate = float(c.mean() - b.mean())
    return ChangeTest(test, _t_p_value(estimate, se, df), estimate, int(b.size), int(c.size))


def fisher_greater(failed_baseline: int, total_baseline: int, failed_current: int, total_current: int) -> float:
    """Return Fisher's exact one-sided p-value that the current failure proportion is greater.
    Raises ValueError for counts outside 0..total."""
    for failed, total in ((failed_baseline, total_baseline), (failed_current, total_current)):
        if not 0 <= int(failed) <= int(total):
            raise ValueError(f"failed={failed!r}, total={total!r}: need 0 <= failed <= total")
    table = [[int(failed_current), int(total_current) - int(failed_current)],
             [int(failed_baseline), int(total_baseline) - int(failed_baseline)]]
    return float(sps.fisher_exact(table, alternative="greater").pvalue)


def holm_adjust(p_values: Iterable[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values, in the input order: reject where adjusted < alpha."""
    p = [float(v) for v in p_values]
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [1.0] * len(p), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted
