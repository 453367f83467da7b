"""Max sustainable request rate under a p99 SLO, found by search over the rate (not by a fixed grid).

The search only decides which rate to try next; measuring is injected as ``measure(rate_rps) ->
PointMeasurement`` so the same code runs against a real deployment (`harness.sweep.measurement`) or a
simulated service (`harness.sweep.simulated`) in tests.

Algorithm: boundary finding by geometric growth from ``start_rps`` until the first violation (or
geometric shrinking while the start rate already fails), then bisection between the highest passing
and the lowest failing rate until they are within ``rel_tol`` of each other. A violation where the
service did not keep up (it completed, or answered successfully, well below the offered rate: judged
from its backlog's growth where measured, `kept_up_rps`, and from the requests it shed) also tells
roughly where its capacity lies: with no passing rate yet the next probe goes just below the completed
throughput (the knee of a generous SLO lies close to capacity) rather than to half the rate; with one,
the next probe goes to the completed throughput itself, and while such probes pass the search steps
up from them by ``rel_tol`` (`step_up`), the smallest step after which a failure ends the search. The
completed throughput is only a hint, never a bound: a heavily overloaded service often completes less
than its capacity (shedding and queueing cost it CPU, the generator competes for the cores), and a
bound taken from it would end the search below the true knee. Both ends of the bracket are measured
rates. A lagging generator stops the search: rates beyond what
the generator can send cannot be measured, and the result says so instead of blaming the service.
The answer is always a rate that was measured to pass, never an interpolation.

**Goodput** (a generative target, ``min_good_share`` set): a probe's latency criterion is the token SLO
instead of the p99: it passes when at least ``min_good_share`` of its requests are good (succeeded within
every TTFT / ITL / TPOT / end-to-end bound, `harness.slo.TokenSlo`, `harness.measure.tokens`), with the
error-rate and keep-up criteria as ever; under half that share is a clear violation. The max rate found
is then the max rate meeting the token SLO, and its goodput is that rate's good requests per second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from harness.errors import ConfigError
from harness.measure.overload import completed_rate
from harness.slo import DEFAULT_MAX_ERROR_RATE, DEFAULT_P99_MS

__all__ = [
    "PASS",
    "FAIL",
    "CLEAR_FAIL",
    "GENERATOR_LIMITED",
    "INCOMPLETE",
    "STOP_CONVERGED",
    "STOP_MAX_PROBES",
    "STOP_CAPPED",
    "STOP_NONE_SUSTAINABLE",
    "STOP_GENERATOR",
    "STOP_BUDGET",
    "PointMeasurement",
    "SearchSettings",
    "Probe",
    "SearchResult",
    "classify",
    "is_clear_violation",
    "kept_up_rps",
    "step_up",
    "validate_search_settings",
    "search_max_rate",
]

PASS = "pass"
FAIL = "fail"
CLEAR_FAIL = "clear-fail"  # far beyond the SLO: no need for more windows at this rate
GENERATOR_LIMITED = "generator-limited"  # the load generator could not send at the rate asked
INCOMPLETE = "incomplete"  # the caller's budget ended the probe before it was measured: no verdict on the rate

STOP_CONVERGED = "converged"
STOP_MAX_PROBES = "max-probes"
STOP_CAPPED = "capped"
STOP_NONE_SUSTAINABLE = "none-sustainable"
STOP_GENERATOR = "generator-limited"
STOP_BUDGET = "timeout"  # the caller's wall-clock budget ran out before the next probe


@dataclass(frozen=True)
class PointMeasurement:
    """What was measured at one offered rate (medians over the point's windows).

    ``sent_rate_rps`` is the arrival rate the schedule actually produced in the windows (None when
    unknown): with Poisson arrivals it differs from ``rate_rps`` by chance, so keeping up is judged
    against it. ``generator_saturated`` says the generator could not keep its schedule.
    ``throughput_rps`` counts successful responses per second. ``backlog_growth``, where measured,
    says whether the service kept up (`kept_up_rps`); without it, the throughput does.
    """

    rate_rps: float
    throughput_rps: float
    p99_ms: float
    error_rate: float = 0.0
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    sent_rate_rps: float | None = None
    generator_saturated: bool = False
    backlog_growth: float = math.nan  # latency added per second of sending (harness.measure.overload); NaN: unknown
    generator_workers: int = 1  # the generator's processes that measured it
    generator_detail: str = ""  # why the generator could not keep up, in words ("" when it could)
    windows: int = 1
    status: str = "ok"
    reason: str = ""
    good_share: float = math.nan  # generative: the share of requests meeting the token SLO
    goodput_rps: float = math.nan  # good requests per second
    ttft_p99_ms: float = math.nan
    itl_p99_ms: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchSettings:
    """The SLO and the search's knobs (validated by `validate_search_settings`)."""

    p99_ms: float = DEFAULT_P99_MS
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    min_throughput_ratio: float = 0.95  # completed/offered below this: the service did not keep up
    start_rps: float = 10.0
    growth: float = 2.0
    rel_tol: float = 0.05
    max_probes: int = 20
    min_rps: float = 0.5
    max_rps: float = 100_000.0
    clear_p99_factor: float = 4.0  # p99 beyond this many SLOs is a clear violation
    clear_error_rate: float = 0.10
    overload_margin: float = 0.10  # no pass yet: the next probe = completed throughput under overload x (1 - margin)
    min_good_share: float | None = None  # generative: the token SLO's share of good requests a pass needs


@dataclass(frozen=True)
class Probe:
    """One step of the search: the rate tried, what was measured, and the verdict with its reason."""

    rate_rps: float
    verdict: str
    reason: str
    measurement: PointMeasurement

    def to_dict(self) -> dict:
        return {"rate_rps": self.rate_rps, "verdict": self.verdict, "reason": self.reason,
                "measurement": self.measurement.to_dict()}


@dataclass
class SearchResult:
    """The highest rate measured to pass the SLO (0.0 when none did), its bounds and every probe."""

    max_rate_rps: float
    lower_rps: float | None
    upper_rps: float | None
    converged: bool
    stop_reason: str
    detail: str
    settings: SearchSettings
    probes: list[Probe] = field(default_factory=list)

    @property
    def at_max(self) -> PointMeasurement | None:
        """The measurement at the reported max rate (None when no rate passed)."""
        passing = [p for p in self.probes if p.verdict == PASS and p.rate_rps == self.lower_rps]
        return passing[-1].measurement if passing else None

    def to_dict(self) -> dict:
        return {
            "max_rate_rps": self.max_rate_rps,
            "lower_rps": self.lower_rps,
            "upper_rps": self.upper_rps,
            "converged": self.converged,
            "stop_reason": self.stop_reason,
            "detail": self.detail,
            "probe_count": len(self.probes),
            "settings": asdict(self.settings),
            "probes": [p.to_dict() for p in self.probes],
        }


def validate_search_settings(settings: SearchSettings) -> None:
    """Raise ConfigError naming the first setting that is out of range."""
    positive = ("p99_ms", "start_rps", "min_rps", "max_rps")
    for name in positive:
        value = getattr(settings, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(name, value, "must be a finite number greater than zero")
    if settings.min_rps > settings.max_rps:
        raise ConfigError("min_rps", settings.min_rps, f"above max_rps={settings.max_rps!r}")
    if not settings.min_rps <= settings.start_rps <= settings.max_rps:
        raise ConfigError("start_rps", settings.start_rps, f"must lie in [min_rps, max_rps] = [{settings.min_rps}, {settings.max_rps}]")
    if not (settings.growth > 1.0 and math.isfinite(settings.growth)):
        raise ConfigError("growth", settings.growth, "must be greater than 1")
    if not 0 < settings.rel_tol < 1:
        raise ConfigError("rel_tol", settings.rel_tol, "must lie in (0, 1)")
    if not (isinstance(settings.max_probes, int) and settings.max_probes >= 1):
        raise ConfigError("max_probes", settings.max_probes, "must be an integer >= 1")
    for name in ("max_error_rate", "clear_error_rate", "min_throughput_ratio"):
        value = getattr(settings, name)
        if not 0 <= value <= 1:
            raise ConfigError(name, value, "must lie in [0, 1]")
    if settings.clear_p99_factor < 1:
        raise ConfigError("clear_p99_factor", settings.clear_p99_factor, "must be at least 1")
    if settings.min_good_share is not None and not 0 < settings.min_good_share <= 1:
        raise ConfigError("min_good_share", settings.min_good_share, "must lie in (0, 1]")
    if settings.overload_margin < 0:
        raise ConfigError("overload_margin", settings.overload_margin, "must not be negative")


def _generator_lagged(m: PointMeasurement) -> bool:
    return m.generator_saturated


def _offered_rps(m: PointMeasurement) -> float:
    return m.sent_rate_rps if m.sent_rate_rps is not None and m.sent_rate_rps > 0 else m.rate_rps


def kept_up_rps(m: PointMeasurement) -> float:
    """Return the rate the service completed at in ``m``, as the keep-up check sees it: from the
    backlog growth where measured (`harness.measure.overload.completed_rate`: a window's count of
    answers is thrown off by the requests in flight filling up after a generator starts), else the
    successful responses per second."""
    if math.isfinite(m.backlog_growth):
        return completed_rate(_offered_rps(m), m.backlog_growth)  # never above the offered rate
    return m.throughput_rps


def is_clear_violation(m: PointMeasurement, s: SearchSettings) -> bool:
    """Return True when ``m`` is so far beyond the SLO that more windows at this rate are pointless."""
    p99 = m.p99_ms if math.isfinite(m.p99_ms) else math.inf
    slow = _good_share(m) < s.min_good_share / 2 if s.min_good_share is not None else p99 > s.clear_p99_factor * s.p99_ms
    return slow or m.error_rate > s.clear_error_rate or _generator_lagged(m)


def _good_share(m: PointMeasurement) -> float:
    return m.good_share if math.isfinite(m.good_share) else 0.0  # no token figure: no good request


def _tokens_text(m: PointMeasurement) -> str:
    return (f"good {_good_share(m):.1%}, goodput {m.goodput_rps:.1f} rps, TTFT p99 {m.ttft_p99_ms:.1f} ms, "
            f"ITL p99 {m.itl_p99_ms:.1f} ms")


def classify(m: PointMeasurement, s: SearchSettings) -> tuple[str, str]:
    """Return (verdict, reason) for one measurement against the SLO: PASS, FAIL, CLEAR_FAIL, GENERATOR_LIMITED,
    or INCOMPLETE (a measurement with status ``incomplete``: cut short by the caller's budget, it says nothing)."""
    if m.status == INCOMPLETE:
        return INCOMPLETE, f"probe cut short by the budget: {m.reason}".rstrip(": ")
    if _generator_lagged(m):
        why = f" ({m.generator_detail})" if m.generator_detail else ""
        if m.status in ("ok", "unstable") and m.error_rate > s.clear_error_rate:
            # the service refused what it was sent: its failure, whatever the generator's lag (a lagging
            # generator only sends later, never more; its latencies might be the generator's, its errors are not)
            return CLEAR_FAIL, (f"error rate {m.error_rate:.2%} > {s.max_error_rate:.2%} (the service's answers; the "
                                f"generator also lagged{why})")
        return GENERATOR_LIMITED, f"load generator could not keep its schedule at {m.rate_rps:.1f} rps{why}"
    if m.status not in ("ok", "unstable"):
        return CLEAR_FAIL, f"measurement {m.status}: {m.reason}".rstrip(": ")
    problems = []
    p99 = m.p99_ms if math.isfinite(m.p99_ms) else math.inf
    tokens = s.min_good_share is not None
    if tokens and _good_share(m) < s.min_good_share:
        problems.append(f"{_tokens_text(m)}: good share < {s.min_good_share:.0%}")
    elif not tokens and p99 > s.p99_ms:
        problems.append(f"p99 {p99:.1f} ms > SLO {s.p99_ms:g} ms")
    if m.error_rate > s.max_error_rate:
        problems.append(f"error rate {m.error_rate:.2%} > {s.max_error_rate:.2%}")
    offered = _offered_rps(m)
    completed = kept_up_rps(m)
    if completed < s.min_throughput_ratio * offered:
        if math.isfinite(m.backlog_growth):
            problems.append(f"did not keep up: backlog grew {m.backlog_growth * 1000:.0f} ms per s, completing "
                            f"{completed:.1f} rps < {s.min_throughput_ratio:.0%} of offered {offered:.1f} rps")
        else:
            problems.append(f"throughput {m.throughput_rps:.1f} rps < {s.min_throughput_ratio:.0%} of offered {offered:.1f} rps")
    if not problems and tokens:
        return PASS, f"{_tokens_text(m)} >= {s.min_good_share:.0%} good at {m.throughput_rps:.1f} rps"
    if not problems:
        return PASS, f"p99 {p99:.1f} ms <= SLO {s.p99_ms:g} ms at {m.throughput_rps:.1f} rps"
    verdict = CLEAR_FAIL if is_clear_violation(m, s) else FAIL
    return verdict, "; ".join(problems)


def _bracket(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return ""
    return f" with the max rate in [{lo or 0:.2f}, {f'{hi:.2f}' if hi is not None else 'unknown'}) rps"


def search_max_rate(
    measure: Callable[[float], PointMeasurement],
    settings: SearchSettings | None = None,
    *,
    on_probe: Callable[[Probe], None] | None = None,
    keep_going: Callable[[float], str | None] | None = None,
) -> SearchResult:
    """Return the max sustainable rate under ``settings.p99_ms``, calling ``measure(rate_rps)`` per probe.

    Raises ConfigError for invalid settings; exceptions from ``measure`` propagate (the caller owns
    the deployment and tears it down). ``on_probe`` is told of each probe as it completes.
    ``keep_going(next_rate)`` returns None to go on, or why the search must stop there (a spent
    budget): the result then keeps the bracket found so far, stop_reason `STOP_BUDGET`.
    """
    s = settings or SearchSettings()
    validate_search_settings(s)
    probes: list[Probe] = []
    lo: float | None = None  # highest rate measured to pass
    hi: float | None = None  # lowest rate measured to fail
    hint: float | None = None  # the capacity an overloaded probe completed at: worth probing next
    climbing = False  # the last probe was a hint or a step up from one
    rate = s.start_rps

    def finish(reason: str, detail: str, converged: bool = False) -> SearchResult:
        return SearchResult(lo or 0.0, lo, hi, converged, reason, detail, s, probes)

    while len(probes) < s.max_probes:
        stop = keep_going(rate) if keep_going is not None else None
        if stop:
            return finish(STOP_BUDGET, f"{stop} after {len(probes)} probe(s)" + _bracket(lo, hi))
        m = measure(rate)
        verdict, why = classify(m, s)
        probe = Probe(rate, verdict, why, m)
        probes.append(probe)
        if on_probe is not None:
            on_probe(probe)
        if verdict == GENERATOR_LIMITED:
            hi = rate if hi is None else min(hi, rate)
            return finish(STOP_GENERATOR, f"{why}; the max rate is a lower bound limited by the generator")
        if verdict == INCOMPLETE:  # neither a pass nor a failure: the bracket stays as it was
            return finish(STOP_BUDGET, f"{why} after {len(probes)} probe(s)" + _bracket(lo, hi))
        overloaded = False
        if verdict == PASS:
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
            # overloaded: completions ran at (or, thrashing, below) capacity: where to look next
            overloaded = 0 < m.throughput_rps and _overloaded(m, s)
            hint = m.throughput_rps if overloaded else None
        if lo is not None and hi is not None and lo >= hi:
            hi = lo * (1.0 + s.rel_tol)  # noise made a pass sit above a failure; the pass is the measured fact
        if hi is None:
            if rate >= s.max_rps:
                return finish(STOP_CAPPED, f"passed at max_rps={s.max_rps:g}; the true maximum may be higher")
            rate = min(rate * s.growth, s.max_rps)
            continue
        if lo is None:
            if rate <= s.min_rps:
                return finish(STOP_NONE_SUSTAINABLE, f"no rate >= min_rps={s.min_rps:g} met the SLO ({why})")
            # an overload measured the capacity: the knee lies just below it, so try there rather than halve
            below = m.throughput_rps * (1.0 - s.overload_margin) if overloaded else min(rate, hi) / s.growth
            rate = max(min(below, rate / s.growth) if not overloaded else below, s.min_rps)
            continue
        if (hi - lo) / hi <= s.rel_tol:
            return finish(STOP_CONVERGED, f"max rate in [{lo:.2f}, {hi:.2f}) rps (rel_tol {s.rel_tol:g})", converged=True)
        rate, climbing = _next_rate(lo, hi, hint, climbing and verdict == PASS, s)
        hint = None
    detail = f"stopped after max_probes={s.max_probes}"
    if lo is not None and hi is not None:
        detail += f" with the max rate in [{lo:.2f}, {hi:.2f}) rps"
    return finish(STOP_MAX_PROBES, detail)


def _overloaded(m: PointMeasurement, s: SearchSettings) -> bool:
    """Return True when ``m`` completed, or answered successfully, well below its offered rate: its
    backlog grew or it shed requests, so its throughput is about what the service can complete."""
    floor = s.min_throughput_ratio * _offered_rps(m)
    return kept_up_rps(m) < floor or m.throughput_rps < floor


def step_up(lo: float, s: SearchSettings) -> float:
    """Return the rate a step above a pass at ``lo``: the highest whose failure converges the search."""
    return lo * (1.0 + s.rel_tol)


def _next_rate(lo: float, hi: float, hint: float | None, climbing: bool, s: SearchSettings) -> tuple[float, bool]:
    """Return the next rate inside the bracket [lo, hi) and whether it is a hint or a step up from one.

    After a pass at a hint (or a step up from one) the knee is near: a step up by ``rel_tol``. Else
    an overload's completed throughput, or a step up where that lies no further above the highest
    pass, while it stays clear of the failure. Else the bisection's midpoint.
    """
    clear_of_failure = hi * (1.0 - s.rel_tol)
    if climbing and step_up(lo, s) < clear_of_failure:
        return step_up(lo, s), True
    if hint is not None and max(hint, step_up(lo, s)) < clear_of_failure:
        return max(hint, step_up(lo, s)), True
    return (lo + hi) / 2.0, False
    detail = f"stopped after max_probes={s.max_probes}"
    if lo is not None and hi is not None:
        detail += f" with the max rate in [{lo:.2f}, {hi:.2f}) rps"
    return finish(STOP_MAX_PROBES, detail)
