"""The SLA configuration: the tiers, their period, how often each fault is expected, the monitoring
thresholds, and the tier a run must meet; read once, from YAML or a mapping, and validated.

What these values mean (error budget, projected burn, met / not met / inconclusive) is defined, and
judged, in `harness.measure.sla`; ``harness chaos run --sla FILE`` and ``harness run --sla FILE``
read a file of this shape (`load_sla_config`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config import load_yaml_file
from harness.errors import ConfigError
from harness.slo import DEFAULT_P99_MS
from harness.validation import validate_model

__all__ = ["DEFAULT_TIERS", "TIER_FOR_TOPOLOGY", "DAY_S", "Tier", "Thresholds", "SlaConfig", "load_sla_config"]


TIER_FOR_TOPOLOGY = {"single": "single-point", "active-standby": "active-standby", "multi-active": "multi-active"}
DAY_S = 86_400.0


class Tier(BaseModel):
    """One SLA tier: the availability it promises over the period and how fast it must recover."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    availability_percent: float = Field(gt=0, lt=100)
    max_recovery_s: float = Field(gt=0)

    def error_budget_s(self, period_s: float) -> float:
        """Return the seconds of full outage the objective allows over ``period_s``."""
        return (1.0 - self.availability_percent / 100.0) * period_s


DEFAULT_TIERS = (
    Tier(name="single-point", availability_percent=99.0, max_recovery_s=4 * 3600.0),
    Tier(name="active-standby", availability_percent=99.5, max_recovery_s=15 * 60.0),
    Tier(name="multi-active", availability_percent=99.99, max_recovery_s=30.0),
)


class Thresholds(BaseModel):
    """Monitoring thresholds that raise alerts whatever the tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p99_latency_ms: float = Field(DEFAULT_P99_MS, gt=0)  # the SLO's latency bound (harness.slo)
    gpu_util_percent: float = Field(90.0, gt=0, le=100)
    gpu_sustained_s: float = Field(60.0, gt=0)
    memory_growth_mb_per_s: float = Field(10.0, gt=0)
    memory_window_s: float = Field(60.0, gt=0)


class SlaConfig(BaseModel):
    """The tiers, their period, how often each fault is expected, the thresholds and the required tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS))
    thresholds: Thresholds = Field(default_factory=Thresholds)
    required_tier: str | None = None
    period_days: float = Field(30.0, gt=0, le=3660)
    faults_per_day: float = Field(1.0, gt=0, le=1e6)  # the default expected rate of any fault
    fault_rates_per_day: dict[str, float] = Field(default_factory=dict)  # per fault name, e.g. {"oom-kill": 0.1}
    confidence: float = Field(0.95, gt=0.5, lt=1)

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

    @field_validator("fault_rates_per_day")
    @classmethod
    def _positive_rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for name, rate in rates.items():
            if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
                raise ValueError(f"{name}={rate!r}: expected faults per day must be a number greater than zero")
        return rates

    @model_validator(mode="after")
    def _known_required_tier(self) -> "SlaConfig":
        if self.required_tier is not None and self.required_tier not in self.tier_names:
            raise ValueError(f"required_tier={self.required_tier}: unknown tier (known: {', '.join(self.tier_names)})")
        return self

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def period_s(self) -> float:
        return self.period_days * DAY_S

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

    def faults_per_period(self, fault: str | None, declared_per_day: float | None = None) -> float:
        """Return how many faults of kind ``fault`` the period expects: this config's rate for it,
        else the experiment's declared rate, else the default; times the period in days."""
        rate = self.fault_rates_per_day.get(fault or "", declared_per_day or self.faults_per_day)
        return rate * self.period_days


def load_sla_config(path: str | Path | None = None, data: Mapping[str, Any] | None = None) -> SlaConfig:
    """Return the SLA config from a YAML file and/or a mapping (its ``sla`` section if it has one).

    Keys in ``data`` override the file's; with neither, the defaults. Raises ConfigError naming the
    bad field (e.g. ``tiers.1.availability_percent``).
    """
    merged: dict[str, Any] = {}
    for part in (load_yaml_file(path, "sla", needs="a tier, period_days or fault_rates_per_day") if path is not None else None, data):
        if part is None:
            continue
        section = part.get("sla", part) if isinstance(part, Mapping) else part
        if not isinstance(section, Mapping):
            raise ConfigError("sla", type(section).__name__, "expected a mapping")
        merged.update(section)
    return validate_model(SlaConfig, merged, source=str(path) if path is not None else None)
