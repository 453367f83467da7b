"""SLA tiers and the verdict: the one place tiers, thresholds and pass/fail are defined.

Definitions (reports quote these):

- **Tier**: a named pair (minimum availability, maximum recovery time). Defaults, from DESIGN.md:
  single-point 99.0% / 4 h, active-standby 99.5% / 15 min, multi-active 99.99% / 30 s. Tiers are
  ranked by strictness (higher availability, then shorter recovery); configurable from YAML.
- **Availability**: the fraction of requests answered successfully in the analysis window (see
  `harness.measure.recovery`); a tier is met on availability when ``availability * 100`` is at least
  its percentage.
- **Recovery**: a tier is met on recovery when the time to recover (TTR) is at most its maximum.
  Not recovered by the end of the observation fails every tier: recovery could not be confirmed.
  When no fault was injected (TTR and recovered both None) recovery is not judged.
- **Monitoring thresholds** (alerts, on top of the tier): p99 inference latency > 500 ms, GPU
  utilisation > 90% sustained for 60 s (or the whole, shorter observation), memory growth > 10 MB/s
  (least-squares slope of RSS over 60 s windows). See `harness.measure.alerts`.
- **Verdict**: the highest tier met (or None), each tier's shortfalls, every alert, and
  ``violations``: all of them as messages. `meets` is the pass/fail: the required tier is met and,
  unless told otherwise, no alert fired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config import load_yaml_file, validate_model
from harness.errors import ConfigError
from harness.measure.alerts import TelemetrySample, check_gpu_utilisation, check_memory_growth, check_p99
from harness.measure.recovery import RecoveryResult

__all__ = [
    "DEFAULT_TIERS",
    "TIER_FOR_TOPOLOGY",
    "Tier",
    "Thresholds",
    "SlaConfig",
    "Verdict",
    "load_sla_config",
    "check_availability",
    "check_recovery",
    "check_alerts",
    "evaluate",
    "evaluate_recovery",
    "meets",
]

TIER_FOR_TOPOLOGY = {"single": "single-point", "active-standby": "active-standby", "multi-active": "multi-active"}
_EPS = 1e-9


class Tier(BaseModel):
    """One SLA tier: the availability it promises and how fast it must recover."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    availability_percent: float = Field(gt=0, le=100)
    max_recovery_s: float = Field(gt=0)


DEFAULT_TIERS = (
    Tier(name="single-point", availability_percent=99.0, max_recovery_s=4 * 3600.0),
    Tier(name="active-standby", availability_percent=99.5, max_recovery_s=15 * 60.0),
    Tier(name="multi-active", availability_percent=99.99, max_recovery_s=30.0),
)


class Thresholds(BaseModel):
    """Monitoring thresholds that raise alerts whatever the tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p99_latency_ms: float = Field(500.0, gt=0)
    gpu_util_percent: float = Field(90.0, gt=0, le=100)
    gpu_sustained_s: float = Field(60.0, gt=0)
    memory_growth_mb_per_s: float = Field(10.0, gt=0)
    memory_window_s: float = Field(60.0, gt=0)


class SlaConfig(BaseModel):
    """The tiers, the thresholds, and (optionally) the tier a run must meet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS))
    thresholds: Thresholds = Field(default_factory=Thresholds)
    required_tier: str | None = None

    @field_validator("tiers")
    @classmethod
    def _unique_tiers(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("at least one tier is needed")
        names = [t.name for t in tiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate tier names: {', '.join(duplicates)}")
        return tiers

    @model_validator(mode="after")
    def _known_required_tier(self) -> "SlaConfig":
        if self.required_tier is not None and self.required_tier not in self.tier_names:
            raise ValueError(f"required_tier={self.required_tier}: unknown tier (known: {', '.join(self.tier_names)})")
        return self

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def ranked_tiers(self) -> list[Tier]:
        """The tiers from least to most strict."""
        return sorted(self.tiers, key=lambda t: (t.availability_percent, -t.max_recovery_s))

    def tier(self, name: str) -> Tier:
        """Return the tier called ``name``; raise ConfigError naming the known tiers."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise ConfigError("tier", name, f"unknown tier (known: {', '.join(self.tier_names)})")


def load_sla_config(path: str | Path | None = None, data: Mapping[str, Any] | None = None) -> SlaConfig:
    """Return the SLA config from a YAML file and/or a mapping (its ``sla`` section if it has one).

    Keys in ``data`` override the file's; with neither, the defaults. Raises ConfigError naming the
    bad field (e.g. ``tiers.1.availability_percent``).
    """
    merged: dict[str, Any] = {}
    for part in (load_yaml_file(path) if path is not None else None, data):
        if part is None:
            continue
        section = part.get("sla", part) if isinstance(part, Mapping) else part
        if not isinstance(section, Mapping):
            raise ConfigError("sla", type(section).__name__, "expected a mapping")
        merged.update(section)
    return validate_model(SlaConfig, merged, source=str(path) if path is not None else None)


@dataclass(frozen=True)
class Verdict:
    """The outcome of an SLA evaluation (see module docstring)."""

    tier: str | None
    tiers_met: list[str]
    tier_findings: dict[str, list[str]]
    alerts: list[str]
    violations: list[str]
    required_tier: str | None = None
    measured: dict[str, Any] = field(default_factory=dict)

    def violations_for(self, tier: str) -> list[str]:
        """Return what keeps ``tier`` from passing: its shortfalls, then every alert; raise ConfigError if unknown."""
        if tier not in self.tier_findings:
            raise ConfigError("tier", tier, f"unknown tier (known: {', '.join(self.tier_findings)})")
        return list(self.tier_findings[tier]) + list(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier, "tiers_met": list(self.tiers_met), "required_tier": self.required_tier,
            "passed": meets(self) if self.required_tier else None,
            "tier_findings": {k: list(v) for k, v in self.tier_findings.items()},
            "alerts": list(self.alerts), "violations": list(self.violations), "measured": dict(self.measured),
        }


def check_availability(availability: float, tier: Tier) -> list[str]:
    """Return a finding when ``availability`` (a fraction 0..1) is under the tier's percentage."""
    percent = availability * 100.0
    if percent + _EPS >= tier.availability_percent:
        return []
    return [f"availability {percent:.3f}% < {tier.availability_percent:g}% required by {tier.name}"]


def check_recovery(
    ttr_s: float | None, recovered: bool | None, tier: Tier, observed_s: float | None = None
) -> list[str]:
    """Return a finding when recovery was not seen or took longer than the tier allows.

    Nothing when recovery was not judged (``ttr_s`` and ``recovered`` both None).
    """
    if recovered is None and ttr_s is None:
        return []
    if recovered is False or ttr_s is None:
        seen = f" within the observed {observed_s:.1f} s" if observed_s is not None else ""
        return [f"not recovered{seen}; {tier.name} requires recovery within {tier.max_recovery_s:g} s"]
    if ttr_s <= tier.max_recovery_s + _EPS:
        return []
    return [f"recovery took {ttr_s:.2f} s > {tier.max_recovery_s:g} s allowed by {tier.name}"]


def check_alerts(
    thresholds: Thresholds, *, p99_ms: float | None = None, telemetry: Iterable[TelemetrySample] | None = None
) -> list[str]:
    """Return every monitoring-threshold finding: p99, sustained GPU utilisation, memory growth."""
    samples = list(telemetry or ())
    return (
        check_p99(p99_ms, thresholds.p99_latency_ms)
        + check_gpu_utilisation(samples, thresholds.gpu_util_percent, thresholds.gpu_sustained_s)
        + check_memory_growth(samples, thresholds.memory_growth_mb_per_s, thresholds.memory_window_s)
    )


def _validate_availability(availability: float) -> float:
    try:
        value = float(availability)
    except (TypeError, ValueError):
        raise ConfigError("availability", availability, "expected a fraction between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError("availability", availability, "expected a fraction between 0 and 1")
    return value


def evaluate(
    *,
    availability: float,
    ttr_s: float | None = None,
    recovered: bool | None = None,
    p99_ms: float | None = None,
    telemetry: Iterable[TelemetrySample] | None = None,
    observed_s: float | None = None,
    config: SlaConfig | None = None,
) -> Verdict:
    """Return the `Verdict` for measured availability (fraction), recovery, p99 and telemetry.

    Raises ConfigError for an availability outside 0..1 or a negative TTR.
    """
    config = config or SlaConfig()
    value = _validate_availability(availability)
    if ttr_s is not None and not (math.isfinite(ttr_s) and ttr_s >= 0):
        raise ConfigError("ttr_s", ttr_s, "expected zero or more seconds (None when not recovered)")
    findings = {
        tier.name: check_availability(value, tier) + check_recovery(ttr_s, recovered, tier, observed_s)
        for tier in config.ranked_tiers
    }
    met = [name for name, found in findings.items() if not found]
    alerts = check_alerts(config.thresholds, p99_ms=p99_ms, telemetry=telemetry)
    violations = [f"{name}: {message}" for name, found in findings.items() for message in found] + alerts
    measured = {
        "availability_percent": value * 100.0, "ttr_s": ttr_s, "recovered": recovered,
        "p99_ms": p99_ms if p99_ms is not None and math.isfinite(p99_ms) else None, "observed_s": observed_s,
    }
    return Verdict(
        tier=met[-1] if met else None, tiers_met=met, tier_findings=findings, alerts=alerts, violations=violations,
        required_tier=config.required_tier, measured=measured,
    )


def evaluate_recovery(
    result: RecoveryResult,
    *,
    p99_ms: float | None = None,
    telemetry: Iterable[TelemetrySample] | None = None,
    config: SlaConfig | None = None,
) -> Verdict:
    """Return the `Verdict` of one fault's `RecoveryResult`.

    ``p99_ms`` defaults to the steady-state p99: the larger of the before and after p99 (the
    failure period itself is judged by availability and recovery, not by the latency alert).
    """
    if p99_ms is None:
        steady = [v for v in (result.p99_ms_before, result.p99_ms_after) if math.isfinite(v)]
        p99_ms = max(steady) if steady else None
    return evaluate(
        availability=result.availability, ttr_s=result.ttr_s, recovered=result.recovered, p99_ms=p99_ms,
        telemetry=telemetry, observed_s=result.window_end_s - result.injected_at_s, config=config,
    )


def meets(verdict: Verdict, tier: str | None = None, *, include_alerts: bool = True) -> bool:
    """Return True when ``tier`` (default: the verdict's required tier) is met, and no alert fired
    unless ``include_alerts`` is False. Raises ConfigError when no tier is given or it is unknown.
    """
    name = tier or verdict.required_tier
    if name is None:
        raise ConfigError("tier", None, "no SLA tier given and none configured (required_tier)")
    problems = verdict.violations_for(name)  # raises for an unknown tier
    return not (problems if include_alerts else verdict.tier_findings[name])
