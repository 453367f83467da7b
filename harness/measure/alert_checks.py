"""Alerts judged against an experiment's expectation: detected, missed, unexpected or unobserved.

The monitoring thresholds (`harness.measure.sla_config.Thresholds`) raise alerts
(`harness.measure.alerts`); an experiment declares the ones its fault should raise. What each
status means for a cell's verdict is defined in `harness.measure.sla`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from harness.errors import ConfigError
from harness.measure.alerts import (
    ALERT_NAMES,
    GPU_UTILISATION,
    MEMORY_GROWTH,
    Alert,
    TelemetrySample,
    gpu_utilisation_alerts,
    memory_growth_alerts,
    p99_alerts,
)
from harness.measure.sla_config import Thresholds

__all__ = ["AlertCheck", "raised_alerts", "check_alerts", "check_alerts_against"]


def raised_alerts(
    thresholds: Thresholds, *, p99_ms: float | None = None, telemetry: Iterable[TelemetrySample] | None = None
) -> list[Alert]:
    """Return every alert the monitoring thresholds raise: p99, sustained GPU utilisation, memory growth."""
    samples = list(telemetry or ())
    return (
        p99_alerts(p99_ms, thresholds.p99_latency_ms)
        + gpu_utilisation_alerts(samples, thresholds.gpu_util_percent, thresholds.gpu_sustained_s)
        + memory_growth_alerts(samples, thresholds.memory_growth_mb_per_s, thresholds.memory_window_s)
    )


def check_alerts(
    thresholds: Thresholds, *, p99_ms: float | None = None, telemetry: Iterable[TelemetrySample] | None = None
) -> list[str]:
    """Return every monitoring-threshold finding as a message (see `raised_alerts`)."""
    return [alert.message for alert in raised_alerts(thresholds, p99_ms=p99_ms, telemetry=telemetry)]


@dataclass(frozen=True)
class AlertCheck:
    """One alert judged against the experiment's expectation.

    ``status``: "detected" (expected and fired: passed), "missed" (expected, silent: failed),
    "unexpected" (fired, not expected: a violation) or "unobserved" (expected, but what it is computed
    from was not sampled here, e.g. no replica telemetry on Kubernetes: neither passed nor failed).
    """

    name: str
    status: str
    message: str
    fired_at_s: float | None = None
    lead_s: float | None = None  # seconds before the platform's kill (positive) or after the injection (negative)

    @property
    def passed(self) -> bool:
        return self.status == "detected"

    @property
    def failed(self) -> bool:
        return self.status in ("missed", "unexpected")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


_TELEMETRY_ALERTS = (GPU_UTILISATION, MEMORY_GROWTH)


def check_alerts_against(
    fired: Sequence[Alert], expected: Sequence[str], *, injected_at_s: float | None, killed_at_s: float | None,
    kill_label: str, telemetry_sampled: bool = True,
) -> list[AlertCheck]:
    """Return one check per ``expected`` alert (detected with its lead time, missed, or unobserved when
    ``telemetry_sampled`` is False and it needs telemetry) and one per ``fired`` alert nobody expected.
    Raises ConfigError for an unknown expected alert name."""
    unknown = [name for name in expected if name not in ALERT_NAMES]
    if unknown:
        raise ConfigError("expect_alerts", unknown[0], f"unknown alert; known: {', '.join(ALERT_NAMES)}")
    checks = []
    for name in dict.fromkeys(expected):
        mine = [a for a in fired if a.name == name]
        if not mine and not telemetry_sampled and name in _TELEMETRY_ALERTS:
            checks.append(AlertCheck(name, "unobserved", f"expected alert {name} not judged: no replica telemetry was "
                                                          f"sampled on this platform"))
            continue
        if not mine:
            checks.append(AlertCheck(name, "missed", f"expected alert {name} did not fire: monitoring would miss this fault"))
            continue
        times = [a.fired_at_s for a in mine if a.fired_at_s is not None]
        at = min(times) if times else None
        if at is not None and killed_at_s is not None:
            lead = killed_at_s - at
            when = f"fired {abs(lead):.1f} s {'before' if lead >= 0 else 'after'} the {kill_label}"
        elif at is not None and injected_at_s is not None:
            lead = injected_at_s - at
            when = f"fired {max(0.0, -lead):.1f} s after the injection"
        else:
            lead, when = None, "fired"
        checks.append(AlertCheck(name, "detected", f"expected alert {name} {when}: {mine[0].message}", at, lead))
    for alert in fired:
        if alert.name not in expected:
            checks.append(AlertCheck(alert.name, "unexpected", f"unexpected alert: {alert.message}", alert.fired_at_s))
    return checks
