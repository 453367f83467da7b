"""Chaos presets: how long each phase of a chaos run lasts, how much load, and the base service spec.

A preset is the size of a run, chosen by name (``smoke``, ``nightly``): each part of the harness keeps
its own settings under that name (this module for a chaos run, `harness.job.presets` for the main
job, `harness.sweep.grid` for a sweep). A *profile* is something else: the shape of load over time
(`harness.load.profiles`).

``smoke`` is sized so that the whole fault x topology matrix finishes within minutes on a 2-core
machine: tight probe periods, a short grace period and a short CrashLoopBackOff, a few seconds of
baseline and a short stability window. ``nightly`` keeps Kubernetes' default probe and back-off
timings and measures longer windows under heavier load. A user's ``--spec`` file replaces the
preset's base spec; an experiment's own overlay (its ``extensions[harness].spec``) goes on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError

__all__ = ["CHAOS_PRESETS", "ChaosPreset", "get_chaos_preset"]


@dataclass(frozen=True)
class ChaosPreset:
    """Timing, load and base spec of one chaos preset."""

    name: str
    baseline_s: float  # steady load before the fault; p99 "before" comes from it
    after_s: float  # measured after recovery; p99 "after" comes from it
    stability_s: float  # successes must last this long to count as recovered
    ready_timeout_s: float  # for the deployment to become Ready before the baseline
    recovery_timeout_cap_s: float  # upper bound on an experiment's recovery_timeout_s
    load: Literal["rate", "locust"]
    load_rate_per_s: float  # rate generator: requests per second
    locust_users: int  # Locust: steady users
    prober_interval_s: float
    prober_timeout_s: float
    base_spec: dict[str, Any] = field(default_factory=dict)


_SMOKE_SPEC: dict[str, Any] = {
    "service": {"max_queue_delay_ms": 5, "warmup_iters": 1, "torch_threads": 1, "grace_period_s": 1},
    "probes": {
        # the initial delay covers a start-up on a busy 2-core machine (imports, weights, warm-up):
        # without it a restarted replica can fail liveness while loading and loop in back-off
        "liveness": {"path": "/v2/health/live", "initialDelaySeconds": 5, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3},
        "readiness": {"path": "/v2/health/ready", "periodSeconds": 0.25, "timeoutSeconds": 1, "failureThreshold": 2},
    },
    "terminationGracePeriodSeconds": 1,
    "restart": {"backoff_base_s": 1, "backoff_cap_s": 8, "reset_after_s": 60},
    "balancer": {"connect_timeout_s": 0.5, "request_timeout_s": 5},
}

_NIGHTLY_SPEC: dict[str, Any] = {
    "terminationGracePeriodSeconds": 10,
    "restart": {"backoff_base_s": 10, "backoff_cap_s": 300},
}

CHAOS_PRESETS: dict[str, ChaosPreset] = {
    "smoke": ChaosPreset(
        name="smoke",
        baseline_s=2.0,
        after_s=1.0,
        stability_s=1.0,
        ready_timeout_s=90.0,
        recovery_timeout_cap_s=60.0,
        load="rate",
        load_rate_per_s=20.0,
        locust_users=2,
        prober_interval_s=0.05,
        prober_timeout_s=2.0,
        base_spec=_SMOKE_SPEC,
    ),
    "nightly": ChaosPreset(
        name="nightly",
        baseline_s=30.0,
        after_s=30.0,
        stability_s=5.0,
        ready_timeout_s=300.0,
        recovery_timeout_cap_s=900.0,
        load="locust",
        load_rate_per_s=50.0,
        locust_users=8,
        prober_interval_s=0.05,
        prober_timeout_s=5.0,
        base_spec=_NIGHTLY_SPEC,
    ),
}


def get_chaos_preset(name: str) -> ChaosPreset:
    """Return the named preset; raise ConfigError naming the known ones."""
    try:
        return CHAOS_PRESETS[name]
    except KeyError:
        raise ConfigError("preset", name, f"unknown preset; choose one of {', '.join(CHAOS_PRESETS)}") from None
