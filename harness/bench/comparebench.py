"""`harness bench compare`: how often `harness compare` cries wolf, and how often it catches a slower build.

Each comparison is a fresh interleaved A/B session (`harness.bench.ab.run_ab`) with its own
deployments: ``same`` sessions compare the build with itself (A/A: any regression is a false alarm),
``slow`` sessions compare it with the same build made ``factor`` x slower in every forward pass on
every replica (slow-inference ``factor``: a regression is a detection). Sessions alternate same,
slow, same, ... so that a machine getting busier during the benchmark weighs on both rates alike.

Printed: the false-alarm rate and the detection rate, each with its Wilson 95% interval, the median
end-to-end p50 change the factor produced (paired, per session), the settings and the machine (CPU
model, cores, load average before and after). Written: ``out/compare_bench.json`` and every session's
runs under ``out/session-NN-same|slow/``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.bench.ab import SIGNOFF_RATE_RPS, SIGNOFF_REQUEST_ROWS, run_ab, signoff_load, signoff_spec

__all__ = ["CompareBenchSettings", "RESULT_FILE", "run_compare_bench", "format_compare_bench"]

RESULT_FILE = "compare_bench.json"
SAME, SLOW = "same", "slow"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CompareBenchSettings:
    """What the benchmark runs. Defaults: 40 sessions (two deployments each) of 10 pairs, each a 4 s
    open-loop run alternating its requests between A and B, about 30 minutes on 2 cores. text-encoder: its 32-sample request is 6 KiB of token ids, so the
    forward pass (~77 ms) is nearly all of a request's time and a slower forward shows in proportion
    (ranker-mlp's 330 KiB of JSON floats would dilute it)."""

    same_sessions: int = 20
    slow_sessions: int = 20
    factor: float = 1.1
    pairs: int = 10
    duration_s: float = 4.0
    warmup_s: float = 1.0
    rate_rps: float = SIGNOFF_RATE_RPS
    request_rows: int = SIGNOFF_REQUEST_ROWS
    model: str = "text-encoder"
    alpha: float = 0.01
    min_change: float = 0.05
    deploy: str = "requests"

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting."""
        from harness.errors import ConfigError

        for name in ("same_sessions", "slow_sessions"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must not be negative")
        if self.same_sessions + self.slow_sessions == 0:
            raise ConfigError("same_sessions", self.same_sessions, "run at least one session")
        if not self.factor > 1.0:
            raise ConfigError("factor", self.factor, "must be greater than 1 (the slower build)")
        if self.pairs < 3:
            raise ConfigError("pairs", self.pairs, "at least 3: fewer pairs are always inconclusive")
        for name in ("duration_s", "rate_rps"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be greater than zero")
        if self.warmup_s < 0:
            raise ConfigError("warmup_s", self.warmup_s, "must not be negative")
        if self.deploy not in ("requests", "session", "round"):
            raise ConfigError("deploy", self.deploy, "choose requests, session or round")
        if self.request_rows < 1:
            raise ConfigError("request_rows", self.request_rows, "must be at least 1")


def _machine() -> dict[str, Any]:
    from harness.environment import cpu_info

    info = cpu_info()
    return {"cpu_model": info.get("model"), "logical_cores": info.get("logical_cores"),
            "usable_cores": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in os.getloadavg()]}


def _session_order(settings: CompareBenchSettings) -> list[str]:
    """Return the session kinds alternated (same, slow, same, ...) then the remainder of the larger kind."""
    order: list[str] = []
    for index in range(max(settings.same_sessions, settings.slow_sessions)):
        order += [kind for kind, count in ((SAME, settings.same_sessions), (SLOW, settings.slow_sessions))
                  if index < count]
    return order


def _rate(flagged: int, n: int) -> dict[str, Any]:
    from harness.measure.stats import wilson_interval

    low, high = wilson_interval(flagged, n) if n else (0.0, 1.0)
    return {"flagged": flagged, "n": n, "rate": flagged / n if n else None, "wilson95": [low, high]}


def _pair_noise(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Return the sd of the per-pair p50 log-ratios of one session: the noise its paired test faces."""
    a_p50 = {r.get("pair"): r.get("p50_ms") for r in a.get("rounds") or []}
    ratios = [math.log(r["p50_ms"] / a_p50[r.get("pair")]) for r in b.get("rounds") or []
              if a_p50.get(r.get("pair")) and r.get("p50_ms")]
    return statistics.stdev(ratios) if len(ratios) >= 2 else None


def _session_summary(kind: str, index: int, out: Path, result: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    comparison = result["comparison"]
    rows = {row["metric"].rsplit(":", 1)[-1]: row for row in comparison["rows"]}
    return {"session": index, "kind": kind, "dir": out.name, "flagged": bool(comparison["regressions"]),
            "pair_noise": _pair_noise(result.get("a") or {}, result.get("b") or {}),
            "p50_change": rows.get("p50_ms", {}).get("change"), "p99_change": rows.get("p99_ms", {}).get("change"),
            "p50_p_adjusted": rows.get("p50_ms", {}).get("p_adjusted"),
            "verdicts": {m: r["verdict"] for m, r in rows.items()}, "elapsed_s": round(elapsed_s, 1)}


def run_compare_bench(settings: CompareBenchSettings, out_dir: str | Path, *, spec: Any = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Run the A/A and A/B sessions and return the rates, the effect, the settings and the machine
    (also written to ``out_dir/compare_bench.json``). Raises ConfigError for bad settings."""
    from harness.config import load_spec
    from harness.load.rounds import Arm
    from harness.measure.regression import Rules
    from harness.paths import resolve_path

    settings.validate()
    say = progress or (lambda _message: None)
    out = resolve_path(out_dir, "out_dir")
    out.mkdir(parents=True, exist_ok=True)
    base = signoff_spec(spec if spec is not None else load_spec(None), model=settings.model)
    load = signoff_load(settings.duration_s, settings.model, settings.rate_rps, settings.request_rows)
    rules = Rules(alpha=settings.alpha, min_change=settings.min_change)
    machine_before, began = _machine(), time.monotonic()
    sessions: list[dict[str, Any]] = []
    order = _session_order(settings)
    for index, kind in enumerate(order, start=1):
        b = Arm("b", base, "slow-inference", {"factor": settings.factor}) if kind == SLOW else Arm("b", base)
        session_out = out / f"session-{index:02d}-{kind}"
        started = time.monotonic()
        say(f"session {index} of {len(order)} ({kind}): {settings.pairs} pairs")
        # no prober and no telemetry: nothing but the measured requests runs beside the service
        result = run_ab(Arm("a", base), b, load, session_out, pairs=settings.pairs, rules=rules,
                        warmup_s=settings.warmup_s, telemetry=False, command=["harness", "bench", "compare"],
                        deploy=settings.deploy)
        sessions.append(_session_summary(kind, index, session_out, result, time.monotonic() - started))
        last = sessions[-1]
        say(f"session {index} ({kind}): {'REGRESSION' if last['flagged'] else 'no regression'}, p50 change "
            f"{_pct(last['p50_change'])}, {last['elapsed_s']} s")
    same = [s for s in sessions if s["kind"] == SAME]
    slow = [s for s in sessions if s["kind"] == SLOW]
    effects = [s["p50_change"] for s in slow if s["p50_change"] is not None]
    result = {
        "false_alarm": _rate(sum(s["flagged"] for s in same), len(same)),
        "detection": _rate(sum(s["flagged"] for s in slow), len(slow)),
        "median_p50_change_slow": statistics.median(effects) if effects else None,
        "median_p50_change_same": statistics.median([s["p50_change"] for s in same if s["p50_change"] is not None] or [0.0]),
        # what the paired test faces: the sd of per-pair p50 log-ratios in the A/A sessions
        "pair_noise_same": _spread([s["pair_noise"] for s in same]),
        "settings": asdict(settings) | {"spec_service": base.service.model_dump(mode="json", exclude={"weights_dir"}),
                                        "order": "sessions alternate same/slow; rounds in each session ABBA pairs"},
        "rule": rules.__dict__,
        "machine": {"before": machine_before, "after": _machine()},
        "elapsed_s": round(time.monotonic() - began, 1),
        "sessions": sessions,
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


_DEPLOY_WORDS = {"requests": "each build deployed once; a pair is one run alternating requests A, B",
                 "session": "each build deployed once; rounds alternate", "round": "each round a fresh deployment"}


def _spread(values: list[float | None]) -> dict[str, float] | None:
    known = [v for v in values if v is not None]
    return {"median": statistics.median(known), "max": max(known)} if known else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def format_compare_bench(result: dict[str, Any]) -> str:
    """Return the benchmark's answer for people: both rates with Wilson intervals, the effect, settings, machine."""
    def rate(entry: dict[str, Any]) -> str:
        low, high = entry["wilson95"]
        value = "n/a" if entry["rate"] is None else f"{entry['rate']:.1%}"
        return f"{entry['flagged']}/{entry['n']} = {value} (Wilson 95% {low:.1%} .. {high:.1%})"

    s, m = result["settings"], result["machine"]
    lines = [
        f"false-alarm rate (A/A, identical builds):  {rate(result['false_alarm'])}",
        f"detection rate (A vs {s['factor']:g}x slower forward):  {rate(result['detection'])}",
        f"median end-to-end p50 change the {s['factor']:g}x factor produced: {_pct(result['median_p50_change_slow'])} "
        f"(A/A sessions: {_pct(result['median_p50_change_same'])})",
        "per-pair noise in the A/A sessions (sd of p50 log-ratios): " + (
            f"median {result['pair_noise_same']['median']:.1%}, max {result['pair_noise_same']['max']:.1%} "
            "(the paired test's noise: a 10% change stands out of 10 pairs at up to ~8%; bursts of other work widen it)"
            if result.get("pair_noise_same") else "n/a"),
        f"settings: {s['pairs']} ABBA pairs per session ({_DEPLOY_WORDS[s['deploy']]}), open-loop {s['rate_rps']:g} req/s "
        f"x {s['request_rows']} samples for {s['duration_s']:g} s after {s['warmup_s']:g} s warm-up, model {s['model']}, "
        f"max_queue_delay_ms {s['spec_service']['max_queue_delay_ms']:g}; alpha {s['alpha']:g} (Holm over p50/p99), "
        f"min change {s['min_change']:.0%}",
        f"machine: {m['before']['cpu_model']}, {m['before']['logical_cores']} logical cores "
        f"({m['before']['usable_cores']} usable), load average {m['before']['load_average']} before, "
        f"{m['after']['load_average']} after; {result['elapsed_s']:.0f} s",
    ]
    return "\n".join(lines)
