"""`harness bench stall`: stalls of known length, measured by the unavailability figure.

One replica of the reference service serves open-loop load with the 50 ms client-side prober
watching. Its process is frozen with SIGSTOP for exactly D seconds and continued with SIGCONT (the
`freeze_replica` chaos activity: a hang that needs nothing from the server), several times, with the
probes set so that nothing restarts or un-routes it: the only thing that happens is the stall. Each
stall is then measured the way a chaos cell is (`harness.measure.recovery.analyze_recovery`), and
the benchmark prints, per stall, the unavailability (the longest time without a successful answer,
which should equal D), its error against the frozen time actually observed between the two signals,
and beside it the client-side outage and TTR (figures by send time, which for a stall are D minus
the SLO plus the backlog's drain: a legitimate client view, not the stall's length).

The check: every stall's unavailability within ``tolerance_ms`` (default 100 ms) of its frozen time.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness.slo import DEFAULT_P99_MS

__all__ = ["StallSettings", "stall_spec", "run_stall_bench", "format_stall_table"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StallSettings:
    """What to freeze, how long and how often, and under how much load."""

    stalls_s: tuple[float, ...] = (1.0, 3.0, 5.0)
    repeats: int = 3
    model: str = DEFAULT_MODEL
    rate_rps: float = 20.0  # open-loop background load beside the prober; 0 for the prober alone
    settle_s: float = 3.0  # steady service before each stall, and after the last one
    tolerance_ms: float = 100.0

    def validate(self) -> "StallSettings":
        """Return self; raise ConfigError naming the first bad field."""
        if not self.stalls_s or any(not (isinstance(d, (int, float)) and 0 < d <= 60) for d in self.stalls_s):
            raise ConfigError("stalls_s", list(self.stalls_s), "give stall lengths in seconds, each above 0 and at most 60")
        if self.repeats < 1:
            raise ConfigError("repeats", self.repeats, "must be at least 1")
        if self.rate_rps < 0 or self.settle_s < 1 or self.tolerance_ms <= 0:
            field_name = "rate_rps" if self.rate_rps < 0 else ("settle_s" if self.settle_s < 1 else "tolerance_ms")
            raise ConfigError(field_name, getattr(self, field_name), "out of range (rate >= 0, settle >= 1 s, tolerance > 0)")
        return self


def stall_spec(settings: StallSettings) -> Any:
    """Return the service spec of the benchmark: one replica whose probes outlast the longest stall, so a
    stall is only a stall (no liveness restart, no readiness un-routing), and a balancer that waits for it."""
    from harness.chaos.experiment import merge_spec

    longest = max(settings.stalls_s)
    return merge_spec({
        "topology": "single",
        "service": {"model": settings.model, "max_queue_delay_ms": 5, "warmup_iters": 1, "torch_threads": 1},
        "probes": {
            "liveness": {"path": "/v2/health/live", "initialDelaySeconds": 5, "periodSeconds": 1, "timeoutSeconds": 1,
                         "failureThreshold": int(longest) + 10},
            "readiness": {"path": "/v2/health/ready", "periodSeconds": 1, "timeoutSeconds": 1,
                          "failureThreshold": int(longest) + 10},
        },
        "balancer": {"connect_timeout_s": 1.0, "request_timeout_s": longest + 10.0},
    })


def _schedule(settings: StallSettings) -> list[float]:
    """Stall lengths in the order they run: each length once per round, rounds repeated (1, 3, 5, 1, 3, 5, ...)."""
    return [d for _ in range(settings.repeats) for d in settings.stalls_s]


def run_stall_bench(settings: StallSettings, out_dir: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Deploy, freeze the replica for each stall of the schedule, measure each; return the result (also
    written to ``out_dir/bench.json``). Raises ConfigError for bad settings, HarnessError when the
    deployment or the generators cannot run."""
    from harness.chaos.activities import freeze_replica
    from harness.chaos.loadgen import FLUSH_S, BackgroundLoad
    from harness.jsonfile import write_json
    from harness.load.prober import Prober
    from harness.platforms import deploy
    from harness.request_records import TIMELINE_FILE, ProbeSample, read_records

    settings.validate()
    say = progress or (lambda message: None)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = stall_spec(settings)
    longest = max(settings.stalls_s)
    schedule = _schedule(settings)
    budget_s = sum(d + settings.settle_s for d in schedule) + settings.settle_s + 120.0
    stalls: list[dict[str, float]] = []
    say(f"deploying one {settings.model} replica; {len(schedule)} stalls of {', '.join(f'{d:g}' for d in settings.stalls_s)} s "
        f"x {settings.repeats}, open-loop load {settings.rate_rps:g} req/s, prober every 50 ms")
    deployment = deploy(spec, platform="local", workdir=out / "deployment")
    load = prober = None
    try:
        deployment.wait_ready(timeout_s=120.0)
        if settings.rate_rps > 0:
            load = BackgroundLoad("rate", deployment.endpoint, out / "load", max_duration_s=budget_s,
                                  rate_per_s=settings.rate_rps, model=settings.model, timeout_s=longest + 5.0).start()
        prober = Prober(deployment.endpoint, out / TIMELINE_FILE, interval_s=0.05, timeout_s=longest + 5.0,
                        model=settings.model, max_duration_s=budget_s).start()
        for index, stall_s in enumerate(schedule, 1):
            time.sleep(settings.settle_s)
            frozen = freeze_replica(str(deployment.state_path), "first-ready", stall_s)
            stalls.append({"stall_s": stall_s, "stopped_at_s": frozen["time_s"], "resumed_at_s": frozen["resumed_at_s"],
                           "frozen_s": frozen["resumed_at_s"] - frozen["time_s"]})
            say(f"[{index}/{len(schedule)}] froze {frozen['replica']} for {stalls[-1]['frozen_s']:.3f} s")
        time.sleep(settings.settle_s + FLUSH_S)
    finally:
        if prober is not None:
            prober.stop()
        if load is not None:
            load.stop()
        deployment.close()
    timeline = list(read_records(out / TIMELINE_FILE, ProbeSample))
    rows = [_measure(stall, timeline, end_s=(stalls[i + 1]["stopped_at_s"] - 0.5) if i + 1 < len(stalls) else None,
                     settle_s=settings.settle_s, tolerance_ms=settings.tolerance_ms)
            for i, stall in enumerate(stalls)]
    result = {
        "benchmark": "stall", "settings": asdict(settings), "stalls": rows,
        "all_within_tolerance": all(row["within_tolerance"] for row in rows),
        "max_abs_error_ms": max(abs(row["error_ms"]) for row in rows),
        "machine": _machine(),
        "slo_latency_ms": DEFAULT_P99_MS,
    }
    write_json(out / "bench.json", result)
    return result


def _measure(stall: dict[str, float], timeline: list, *, end_s: float | None, settle_s: float, tolerance_ms: float) -> dict[str, Any]:
    from harness.measure.recovery import analyze_recovery

    window_end = end_s if end_s is not None else stall["resumed_at_s"] + settle_s
    recovery = analyze_recovery(timeline, injected_at_s=stall["stopped_at_s"], slo_latency_ms=DEFAULT_P99_MS,
                                stability_window_s=1.0, end_s=window_end, probe_period_s=0.05)
    error_ms = (recovery.unavailability_s - stall["frozen_s"]) * 1000.0
    return {
        "stall_s": stall["stall_s"], "frozen_s": round(stall["frozen_s"], 4),
        "unavailability_s": round(recovery.unavailability_s, 4), "error_ms": round(error_ms, 1),
        "within_tolerance": abs(error_ms) <= tolerance_ms and not recovery.unavailability_open,
        "recovered_after_resume_ms": None if recovery.recovered_at_s is None
        else round((recovery.recovered_at_s - stall["resumed_at_s"]) * 1000.0, 1),
        "outage_s": round(recovery.outage_s, 3), "ttr_s": None if recovery.ttr_s is None else round(recovery.ttr_s, 3),
    }


def _machine() -> dict[str, Any]:
    from harness.environment import cpu_info

    load_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return {**cpu_info(), "cpus": os.cpu_count(), "load_average_1m": round(load_1m, 2)}


def format_stall_table(result: dict[str, Any]) -> str:
    """Return the benchmark's table for people: one line per stall, then the check."""
    tolerance = result["settings"]["tolerance_ms"]
    lines = [f"{'stall':>6} {'frozen (s)':>11} {'unavailability (s)':>19} {'error (ms)':>11} {'recovered after resume (ms)':>28} "
             f"{'client-side outage (s)':>23} {'TTR (s)':>8}  within +-{tolerance:g} ms"]
    for row in result["stalls"]:
        lines.append(f"{row['stall_s']:>5g}s {row['frozen_s']:>11.3f} {row['unavailability_s']:>19.3f} {row['error_ms']:>+11.1f} "
                     f"{_text(row['recovered_after_resume_ms']):>28} {row['outage_s']:>23.3f} {_text(row['ttr_s']):>8}  "
                     f"{'yes' if row['within_tolerance'] else 'NO'}")
    machine = result["machine"]
    lines.append(f"max |error| {result['max_abs_error_ms']:.1f} ms; every stall within +-{tolerance:g} ms: "
                 f"{'yes' if result['all_within_tolerance'] else 'NO'}")
    lines.append(f"machine: {machine.get('model', 'cpu')} ({machine.get('cpus')} CPUs), load average {machine.get('load_average_1m')}")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}"
