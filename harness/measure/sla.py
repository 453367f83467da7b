"""SLA tiers as error budgets, and the verdict on one fault: the one place they are defined.

Definitions (reports quote these):

- **Tier**: an availability objective over a period (``period_days``, default 30) and a maximum
  recovery time. Defaults, from DESIGN.md: single-point 99.0% / 4 h, active-standby 99.5% / 15 min,
  multi-active 99.99% / 30 s. Configurable from YAML (`harness.measure.sla_config`).
- **Error budget**: ``(1 - objective) x period``: over 30 days 99.0% allows 7.2 h, 99.5% 3.6 h,
  99.99% 4.32 min of full outage. A monthly objective cannot be judged from the seconds around one
  fault; what one fault costs, and how often it happens, can.
- **Cost of one fault**, in seconds of full outage, two views of the analysis window (see
  `harness.measure.recovery`): the *outage cost* is the client-side outage (the time of bad prober
  samples: failed, or over the latency SLO); the *failed-request cost* is the fraction of the load's
  requests that failed times the window's length (as many lost requests as that many seconds of full
  outage would lose at the same rate). Each is a proportion (bad of all prober samples; failed of all
  requests) times the window, so each has a Wilson score interval (`confidence`, default 95%).
- **Budget burn per fault**: cost / error budget. **Projected burn**: burn per fault x the expected
  number of such faults per period (``faults_per_day`` x ``period_days``; default one a day, so 30
  per 30 days; per fault in ``fault_rates_per_day``, else the experiment's own ``faults_per_day``).
- **Outcome of a tier** (met / not met / inconclusive), never a confident red the data cannot carry:
  - *not met*: the time to recover exceeds the tier's maximum, or recovery was not seen within an
    observation at least that long, or the projected burn's *lower* bound exceeds the budget (100%)
    in either view;
  - *met*: recovered within the maximum, and the projected burn's *upper* bound fits the budget in
    both views;
  - *inconclusive*: anything else: the burn's interval straddles the budget (too few samples to
    tell), or recovery was not seen within an observation shorter than the tier's maximum.
- **Alerts** (monitoring thresholds, `harness.measure.alerts`; checked in `harness.measure.alert_checks`): p99 inference latency > 500 ms on
  the steady state (the larger of the p99 before and after the fault), GPU utilisation > 90%
  sustained for 60 s, memory growth > 10 MB/s. They are reported beside the tier, never folded into
  it. An experiment declares the alerts its fault should raise: an expected alert that fired is a
  passed detection check with its lead time (before the platform's kill, else after the injection);
  an expected alert that stayed silent fails the cell (monitoring would have missed the fault); an
  alert nobody expected is a violation and fails the cell too.
- **Verdict of a cell**: not met when the required tier is not met or any alert check fails;
  otherwise inconclusive when the tier is; otherwise met.
- **Steady state** (a load run without a fault, `evaluate_steady`): the failed fraction's Wilson
  interval against the tier's allowed fraction ``1 - objective``: met when its upper bound fits,
  not met when its lower bound exceeds it, inconclusive otherwise (2,000 requests cannot show
  99.99%); plus the alerts, all unexpected.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from harness.errors import ConfigError
from harness.measure.alert_checks import AlertCheck, check_alerts_against, raised_alerts
from harness.measure.alerts import TelemetrySample
from harness.measure.recovery import RecoveryResult
from harness.measure.sla_config import SlaConfig, Tier
from harness.measure.stats import wilson_interval

__all__ = [
    "MET",
    "NOT_MET",
    "INCONCLUSIVE",
    "Cost",
    "TierJudgement",
    "Verdict",
    "fault_cost",
    "judge_tier",
    "evaluate_fault",
    "evaluate_steady",
]

MET, NOT_MET, INCONCLUSIVE = "met", "not met", "inconclusive"
_EPS = 1e-9


# ----- cost and budget ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cost:
    """One view of a fault's cost in seconds of full outage, with its Wilson interval (see docstring)."""

    view: str  # "outage" or "failed requests"
    cost_s: float
    low_s: float
    high_s: float
    bad: int
    total: int
    window_s: float
    lower_bound: bool = False  # the fault outlasted the observation: the true cost is at least this

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fault_cost(recovery: RecoveryResult, confidence: float = 0.95) -> list[Cost]:
    """Return the outage cost and the failed-request cost of the fault ``recovery`` measured."""
    window_s = max(0.0, recovery.window_end_s - recovery.injected_at_s)
    open_ended = not recovery.recovered
    low, high = wilson_interval(recovery.bad_samples, recovery.probe_samples, confidence)
    outage = Cost("outage", recovery.outage_s, min(low * window_s, recovery.outage_s),
                  max(high * window_s, recovery.outage_s), recovery.bad_samples, recovery.probe_samples, window_s,
                  open_ended)
    total, failed = recovery.total_requests, recovery.failed_requests
    low, high = wilson_interval(failed, total, confidence)
    point = failed / total * window_s if total else 0.0
    requests = Cost("failed requests", point, low * window_s, high * window_s, failed, total, window_s, open_ended)
    return [outage, requests]


@dataclass(frozen=True)
class TierJudgement:
    """A tier's outcome for one fault: the budget, each view's projected burn, recovery, and why."""

    tier: str
    outcome: str
    reasons: list[str]
    error_budget_s: float
    faults_per_period: float | None
    burns: list[dict[str, Any]] = field(default_factory=list)  # per view: burn per fault and projected, with bounds
    max_recovery_s: float = 0.0

    @property
    def projected_burn(self) -> float | None:
        """The larger projected burn of the two views (a fraction of the budget), or None."""
        return max((b["projected"] for b in self.burns), default=None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["projected_burn"] = self.projected_burn
        return data


def _recovery_reasons(ttr_s: float | None, recovered: bool | None, observed_s: float | None, tier: Tier) -> tuple[str | None, str]:
    """Return (outcome forced by recovery or None, its reason)."""
    if recovered is None and ttr_s is None:
        return None, "recovery not judged (no fault injected)"
    if recovered is False or ttr_s is None:
        seen = observed_s if observed_s is not None else 0.0
        if seen + _EPS >= tier.max_recovery_s:
            return NOT_MET, f"not recovered within the observed {seen:.1f} s; {tier.name} requires recovery within {tier.max_recovery_s:g} s"
        return INCONCLUSIVE, (f"not recovered within the observed {seen:.1f} s, shorter than the {tier.max_recovery_s:g} s "
                              f"{tier.name} allows: cannot tell")
    if ttr_s > tier.max_recovery_s + _EPS:
        return NOT_MET, f"recovery took {ttr_s:.2f} s > {tier.max_recovery_s:g} s allowed by {tier.name}"
    return None, f"recovered in {ttr_s:.2f} s (<= {tier.max_recovery_s:g} s)"


def judge_tier(
    tier: Tier, costs: Sequence[Cost], *, ttr_s: float | None, recovered: bool | None, observed_s: float | None,
    faults_per_period: float, period_s: float,
) -> TierJudgement:
    """Return the tier's outcome for a fault of these ``costs`` expected ``faults_per_period`` times
    per ``period_s`` (see the module docstring)."""
    budget_s = tier.error_budget_s(period_s)
    forced, recovery_reason = _recovery_reasons(ttr_s, recovered, observed_s, tier)
    reasons = [recovery_reason] if forced else []
    burns = []
    over, unsure = False, False
    for cost in costs:
        scale = faults_per_period / budget_s
        burn = {"view": cost.view, "cost_s": cost.cost_s, "cost_low_s": cost.low_s, "cost_high_s": cost.high_s,
                "burn_per_fault": cost.cost_s / budget_s, "projected": cost.cost_s * scale,
                "projected_low": cost.low_s * scale, "projected_high": cost.high_s * scale,
                "lower_bound": cost.lower_bound}
        burns.append(burn)
        what = (f"{cost.view} {cost.cost_s:.2f} s per fault (95% {cost.low_s:.2f}-{cost.high_s:.2f} s from {cost.bad} of "
                f"{cost.total}) x {faults_per_period:g} faults per period = {burn['projected']:.1%} of the "
                f"{_duration(budget_s)} error budget ({burn['projected_low']:.1%}-{burn['projected_high']:.1%})")
        if burn["projected_low"] > 1.0 + _EPS:
            over = True
            reasons.append(f"{what}: over budget")
        elif burn["projected_high"] > 1.0 + _EPS or cost.lower_bound:
            unsure = True
            why = "the fault outlasted the observation" if cost.lower_bound and burn["projected_high"] <= 1.0 else "too few samples to tell"
            reasons.append(f"{what}: {why}")
    if forced == NOT_MET or over:
        outcome = NOT_MET
    elif forced == INCONCLUSIVE or unsure:
        outcome = INCONCLUSIVE
    else:
        outcome = MET
        worst = max(burns, key=lambda b: b["projected_high"]) if burns else None
        reasons = [recovery_reason] + ([f"projected burn {worst['projected']:.2%} of the {_duration(budget_s)} budget "
                                        f"(at most {worst['projected_high']:.2%}, {worst['view']})"] if worst else [])
    return TierJudgement(tier.name, outcome, reasons, budget_s, faults_per_period, burns, tier.max_recovery_s)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


# ----- the verdict ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """The outcome of an SLA evaluation (see the module docstring): every tier's judgement and the alert checks."""

    required_tier: str | None
    judgements: dict[str, TierJudgement]
    alert_checks: list[AlertCheck]
    costs: list[Cost] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)

    def judgement(self, tier: str | None = None) -> TierJudgement:
        """Return the judgement of ``tier`` (default: the required one); raise ConfigError if unknown."""
        name = tier or self.required_tier
        if name is None:
            raise ConfigError("tier", None, "no SLA tier given and none configured (required_tier)")
        if name not in self.judgements:
            raise ConfigError("tier", name, f"unknown tier (known: {', '.join(self.judgements)})")
        return self.judgements[name]

    @property
    def alert_failures(self) -> list[str]:
        """The alert checks that fail the cell: expected alerts that stayed silent, unexpected alerts."""
        return [check.message for check in self.alert_checks if check.failed]

    def outcome(self, tier: str | None = None) -> str:
        """Return met / not met / inconclusive for ``tier`` (default: required) with the alert checks."""
        judged = self.judgement(tier).outcome
        if judged == NOT_MET or self.alert_failures:
            return NOT_MET
        return judged

    def reasons(self, tier: str | None = None) -> list[str]:
        """Return why ``tier`` is not met or inconclusive (empty when met): tier reasons, then alert failures."""
        judgement = self.judgement(tier)
        tier_reasons = [] if judgement.outcome == MET else [f"{judgement.tier}: {r}" for r in judgement.reasons]
        return tier_reasons + self.alert_failures

    @property
    def highest_tier_met(self) -> str | None:
        """The strictest tier whose outcome (alerts included) is met, or None."""
        met = [name for name in self.judgements if self.outcome(name) == MET]
        return met[-1] if met else None

    def to_dict(self) -> dict[str, Any]:
        required = self.required_tier
        return {
            "required_tier": required, "outcome": self.outcome() if required else None,
            "highest_tier_met": self.highest_tier_met,
            "tiers": {name: j.to_dict() for name, j in self.judgements.items()},
            "alert_checks": [c.to_dict() for c in self.alert_checks], "costs": [c.to_dict() for c in self.costs],
            "measured": dict(self.measured),
        }


def _steady_p99(recovery: RecoveryResult) -> float | None:
    steady = [v for v in (recovery.p99_ms_before, recovery.p99_ms_after) if math.isfinite(v)]
    return max(steady) if steady else None


def evaluate_fault(
    recovery: RecoveryResult,
    *,
    fault: str | None = None,
    config: SlaConfig | None = None,
    expected_alerts: Sequence[str] = (),
    declared_faults_per_day: float | None = None,
    telemetry: Iterable[TelemetrySample] | None = None,
    p99_ms: float | None = None,
    killed_at_s: float | None = None,
    kill_label: str = "kill",
) -> Verdict:
    """Return the `Verdict` on one fault's `RecoveryResult`: every tier's budget judgement and the alerts.

    ``p99_ms`` defaults to the steady-state p99 (the larger of before and after: the fault's own
    period is judged by its cost and recovery, not by the latency alert). ``killed_at_s`` (the
    platform's kill, e.g. an OOM kill) is what an alert's lead time is measured against.
    ``telemetry`` None means none was sampled (expected telemetry alerts are then "unobserved"), an
    empty list that none was recorded. Raises ConfigError for an unknown expected alert name.
    """
    config = config or SlaConfig()
    costs = fault_cost(recovery, config.confidence)
    per_period = config.faults_per_period(fault, declared_faults_per_day)
    observed_s = recovery.window_end_s - recovery.injected_at_s
    judgements = {
        tier.name: judge_tier(tier, costs, ttr_s=recovery.ttr_s, recovered=recovery.recovered, observed_s=observed_s,
                              faults_per_period=per_period, period_s=config.period_s)
        for tier in config.ranked_tiers
    }
    p99 = _steady_p99(recovery) if p99_ms is None else p99_ms
    fired = raised_alerts(config.thresholds, p99_ms=p99, telemetry=telemetry)
    checks = check_alerts_against(fired, expected_alerts, injected_at_s=recovery.injected_at_s,
                                   killed_at_s=killed_at_s, kill_label=kill_label, telemetry_sampled=telemetry is not None)
    measured = {"ttr_s": recovery.ttr_s, "recovered": recovery.recovered, "outage_s": recovery.outage_s,
                "unavailability_s": recovery.unavailability_s, "observed_s": observed_s,
                "failed_requests": recovery.failed_requests, "total_requests": recovery.total_requests,
                "p99_ms": p99, "faults_per_period": per_period, "period_days": config.period_days}
    return Verdict(config.required_tier, judgements, checks, costs, measured)


def evaluate_steady(
    *,
    failed: int,
    total: int,
    p99_ms: float | None = None,
    telemetry: Iterable[TelemetrySample] | None = None,
    config: SlaConfig | None = None,
) -> Verdict:
    """Return the `Verdict` on a load run without a fault (see **Steady state**). Raises ConfigError
    for counts that are not 0 <= failed <= total."""
    config = config or SlaConfig()
    if not (isinstance(failed, int) and isinstance(total, int) and 0 <= failed <= total):
        raise ConfigError("failed", failed, f"expected a count from 0 to total={total!r}")
    low, high = wilson_interval(failed, total, config.confidence)
    judgements = {}
    for tier in config.ranked_tiers:
        allowed = 1.0 - tier.availability_percent / 100.0
        what = (f"{failed} of {total} requests failed ({failed / total if total else 0:.3%}; 95% {low:.3%}-{high:.3%}) "
                f"against {allowed:.3%} allowed by {tier.availability_percent:g}%")
        if low > allowed + _EPS:
            outcome, reasons = NOT_MET, [f"{what}: over"]
        elif high > allowed + _EPS:
            outcome, reasons = INCONCLUSIVE, [f"{what}: too few requests to tell"]
        else:
            outcome, reasons = MET, [what]
        judgements[tier.name] = TierJudgement(tier.name, outcome, reasons, tier.error_budget_s(config.period_s), None,
                                              [], tier.max_recovery_s)
    fired = raised_alerts(config.thresholds, p99_ms=p99_ms, telemetry=telemetry)
    checks = check_alerts_against(fired, (), injected_at_s=None, killed_at_s=None, kill_label="kill")
    return Verdict(config.required_tier, judgements, checks, [],
                   {"failed_requests": failed, "total_requests": total, "p99_ms": p99_ms})
