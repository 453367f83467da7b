"""The verdict on one load run: the one judgement `harness load`, the main job's load stage, the load
scenarios and the report use (`judge_load`).

Definitions (reports quote these):

- **Load verdict**: met / not met / inconclusive, from the load's figures (``requests``, failed
  requests, the exact ``p99_ms`` of its successful requests) against the SLO (`harness.slo`: what a
  request and a run meeting it mean) and, when an SLA tier is named, against that tier's steady
  state (`harness.measure.sla`, **Steady state**).
  - *not met*: no request completed; or the p99 is over the SLO's ``p99_ms``; or the share of
    requests that failed is over the SLO's ``max_error_rate`` (the share this run measured, as a
    sweep point is judged); or, with a tier, the tier is not met (the failed share's confidence
    interval lies wholly over the tier's allowance) or a monitoring alert fired on the replicas'
    telemetry (GPU utilisation, memory growth; the p99 alert's threshold is the SLO's bound, judged
    once, above);
  - *inconclusive*: the SLO is met, and the tier cannot tell (too few requests to show its
    objective, e.g. 1,000 clean requests and 99.99%);
  - *met*: otherwise.
- **Reasons**: one line per criterion not met (or, when inconclusive, that could not be told), each
  naming the figure and its bound; a met verdict keeps the figures it met, so a reader sees the margin.
- The load generator's saturation is noted beside the verdict, never folded into it: the figures
  then include the generator's own delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.measure.alerts import TelemetrySample
from harness.measure.sla import INCONCLUSIVE, MET, NOT_MET, evaluate_steady
from harness.measure.sla_config import SlaConfig
from harness.slo import Slo

__all__ = ["MET", "NOT_MET", "INCONCLUSIVE", "NO_REQUESTS", "LoadVerdict", "judge_load", "judge_saved_load", "validate_tier"]

NO_REQUESTS = "no request completed during the load"


@dataclass(frozen=True)
class LoadVerdict:
    """How one load did against the SLO (and a tier, when one was named): the outcome and its reasons."""

    outcome: str  # MET, NOT_MET or INCONCLUSIVE
    reasons: list[str]  # why not met or inconclusive; when met, the figures that met it
    slo: Slo
    tier: str | None = None
    notes: list[str] = field(default_factory=list)  # beside the verdict, not in it (generator saturation)

    @property
    def met(self) -> bool:
        return self.outcome == MET

    @property
    def failed(self) -> bool:
        return self.outcome == NOT_MET

    @property
    def criteria(self) -> str:
        """What was judged, in words: "SLO (p99 <= 500 ms, errors <= 1%)", plus " and SLA tier X" with a tier."""
        return f"SLO ({self.slo.describe()})" + (f" and SLA tier {self.tier}" if self.tier else "")

    def line(self) -> str:
        """Return the verdict on one line, for a terminal or a log: "SLO (...) met: p99 41.0 ms <= 500 ms; ..."."""
        return f"{self.criteria} {self.outcome}: " + "; ".join(self.reasons + self.notes)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (recorded in the load's run.json summary as ``verdict``)."""
        return {"outcome": self.outcome, "reasons": list(self.reasons), "slo": self.slo.to_dict(), "tier": self.tier,
                "notes": list(self.notes), "line": self.line()}


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0


def _failed(figures: Mapping[str, Any], requests: int) -> int:
    """Failed requests: ``errors`` when recorded, else ``requests - ok``."""
    if figures.get("errors") is not None:
        return min(requests, _count(figures.get("errors")))
    return max(0, requests - _count(figures.get("ok")))


def _p99(figures: Mapping[str, Any]) -> float | None:
    value = figures.get("p99_ms")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def validate_tier(tier: str, sla: SlaConfig | None = None) -> SlaConfig:
    """Return ``sla`` (default `SlaConfig()`) requiring ``tier``; raise ConfigError naming the known tiers
    when it has no such tier (checked before a load runs, so a typo costs nothing)."""
    config = sla or SlaConfig()
    config.tier(tier)
    return config.model_copy(update={"required_tier": tier})


def judge_load(figures: Mapping[str, Any], slo: Slo | None = None, *, tier: str | None = None,
               sla: SlaConfig | None = None, telemetry: Iterable[TelemetrySample] | None = None) -> LoadVerdict:
    """Return the `LoadVerdict` on a load's figures (a ``result.json``: ``requests``, ``errors`` or
    ``ok``, ``p99_ms``, ``generator_saturated``) against ``slo`` (default `Slo()`) and, when ``tier``
    is named, that tier of ``sla`` (default `SlaConfig()`) with the alerts of ``telemetry`` (see the
    module docstring). Raises ConfigError for an unknown tier.
    """
    slo = slo or Slo()
    requests = _count(figures.get("requests"))
    notes = (["the load generator saturated its CPU: the figures include its own delay"]
             if figures.get("generator_saturated") else [])
    if requests == 0:
        return LoadVerdict(NOT_MET, [NO_REQUESTS], slo, tier, notes)
    failed, p99 = _failed(figures, requests), _p99(figures)
    share = failed / requests
    errors = f"{failed} of {requests} requests failed ({share:.2%})"
    latency = "p99 not measured" if p99 is None else f"p99 {p99:.1f} ms"
    problems = []
    if p99 is not None and p99 > slo.p99_ms:
        problems.append(f"{latency} > SLO {slo.p99_ms:g} ms")
    if share > slo.max_error_rate:
        problems.append(f"{errors} > SLO {slo.max_error_rate:.2%}")
    met = [f"{latency} <= SLO {slo.p99_ms:g} ms" if p99 is not None else latency,
           f"{errors} <= SLO {slo.max_error_rate:.2%}"]
    outcome = NOT_MET if problems else MET
    if tier is not None:
        config = validate_tier(tier, sla)
        verdict = evaluate_steady(failed=failed, total=requests, p99_ms=None, telemetry=telemetry, config=config)
        tier_outcome = verdict.outcome()
        if tier_outcome == NOT_MET:
            outcome = NOT_MET
            problems += verdict.reasons()
        elif tier_outcome == INCONCLUSIVE and outcome == MET:
            outcome = INCONCLUSIVE
            problems += verdict.reasons()
        else:
            met += [f"{tier}: {reason}" for reason in verdict.judgement().reasons]
    return LoadVerdict(outcome, problems if outcome != MET else met, slo, tier, notes)


def judge_saved_load(directory: str | Path, figures: Mapping[str, Any], slo: Slo | None = None, *,
                     tier: str | None = None, sla: SlaConfig | None = None) -> LoadVerdict:
    """Return `judge_load` of a load saved in ``directory``: with a ``tier``, the alerts come from its
    ``telemetry.csv`` (none sampled when there is none). Raises ConfigError for an unknown tier,
    OSError when the telemetry cannot be read."""
    from harness.measure.telemetry import TELEMETRY_FILE, read_telemetry

    path = Path(directory) / TELEMETRY_FILE
    telemetry = read_telemetry(path, devices=True) if tier is not None and path.exists() else None
    return judge_load(figures, slo, tier=tier, sla=sla, telemetry=telemetry)
