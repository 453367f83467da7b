"""`harness bench netfault`: do the balancer's network faults do what they claim, measured at the client?

One replica of the reference service behind the local platform's front balancer serves open-loop load
(evenly spaced requests; latency from the intended send time) while faults are injected and cleared
through the deployment's control channel, as the chaos activities of `harness.chaos.network_activities`
do. Two phases, one load each, side by side in one run and one deployment:

1. at ``latency_rate_rps``: ``latency_pairs`` pairs of windows of ``latency_window_s`` each, in the
   order baseline, latency, latency, baseline, baseline, ... (ABBA: a drift of the machine over the
   run weighs on both sides alike): ``baseline-N`` without a fault, ``latency-N`` with ``latency_ms``
   added to every request. The rate is one the service answers without queueing (20/s): near its
   capacity, and on a busy machine, the reference service's dynamic batching meets the delayed
   requests as they leave the balancer's timers in clumps, batches them better and answers faster,
   which hides part of the delay (measured at 100/s on a loaded 2-core machine: +66 to +78 ms of 100);
2. at ``rate_rps``: ``abort``: ``abort_percent`` % of requests answered ``abort_status``, over exactly ``abort_requests`` requests;
3. at ``rate_rps``: ``reset``: ``reset_percent`` % of connections reset, over ``reset_requests`` requests (0: skipped).

A window holds the requests intended to go out from ``guard_s`` after the fault's injection (as the
deployment recorded it) to ``guard_s`` before its end, so the transitions stay out of every figure.
The checks, each figure against its claim: the shift of p50, the median over the pairs of each pair's
latency-window p50 minus its baseline-window p50 (side by side, so a burst of other work on the
machine spoils a pair, not the figure), within ``latency_tolerance_ms`` of ``latency_ms``, with each
pair's difference and the pooled one (every latency window's requests against every baseline
window's) beside it; the abort window's failed share within ``abort_tolerance_pct`` points of
``abort_percent``. The reset window's failed share is reported too.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness.validation import check_ranges

__all__ = ["NetfaultSettings", "netfault_spec", "run_netfault_bench", "format_netfault_table", "window_figures"]

Progress = Callable[[str], None]
BENCH_FILE = "bench.json"


@dataclass(frozen=True)
class NetfaultSettings:
    """The load, the faults and the tolerances of the benchmark (see the module docstring)."""

    model: str = DEFAULT_MODEL
    rate_rps: float = 100.0
    latency_rate_rps: float = 20.0
    latency_ms: float = 100.0
    latency_window_s: float = 3.0
    latency_pairs: int = 8
    abort_percent: float = 20.0
    abort_status: int = 503
    abort_requests: int = 2000
    reset_percent: float = 20.0
    reset_requests: int = 500
    guard_s: float = 0.5
    settle_s: float = 3.0
    seed: int = 0
    latency_tolerance_ms: float = 10.0
    abort_tolerance_pct: float = 3.0

    def validate(self) -> "NetfaultSettings":
        """Return self; raise ConfigError naming the first bad field and its value."""
        ranges = {"rate_rps": (1, 2000), "latency_rate_rps": (1, 2000), "latency_ms": (1, 10_000), "latency_window_s": (0.5, 600), "latency_pairs": (1, 100),
                  "abort_percent": (0.1, 100), "abort_requests": (1, 1_000_000), "reset_percent": (0.1, 100),
                  "reset_requests": (0, 1_000_000), "guard_s": (0, 10), "settle_s": (0, 60),
                  "latency_tolerance_ms": (0.001, 10_000), "abort_tolerance_pct": (0.001, 100), "abort_status": (400, 599)}
        check_ranges(self, ranges)
        if self.abort_requests / self.rate_rps > 600 or self.reset_requests / self.rate_rps > 600:
            raise ConfigError("abort_requests", self.abort_requests, f"at {self.rate_rps:g} requests/s a window would "
                              f"outlast a network fault's 600 s here; ask for fewer requests or a higher rate")
        return self

    def fault_windows_s(self) -> dict[str, float]:
        """Return each window's measured length in seconds (the fault lasts 2 x guard_s longer)."""
        windows: dict[str, float] = {}
        for pair in range(1, self.latency_pairs + 1):
            for name in (("baseline", "latency") if pair % 2 else ("latency", "baseline")):
                windows[f"{name}-{pair}"] = self.latency_window_s
        windows["abort"] = self.abort_requests / self.rate_rps
        if self.reset_requests:
            windows["reset"] = self.reset_requests / self.rate_rps
        return windows

    def planned_s(self, phase: str | None = None) -> float:
        """Return how long the load of ``phase`` ("latency" or "failures"; both when None) runs: settling,
        every window and its guards."""
        windows = [w for name, w in self.fault_windows_s().items()
                   if phase is None or (phase == "latency") == _phase_of(name)]
        return (2 if phase is None else 1) * (self.settle_s + 2.0) + sum(w + 2 * self.guard_s + 0.3 for w in windows)


def _phase_of(name: str) -> bool:
    """Whether window ``name`` belongs to the latency phase."""
    return name.startswith(("baseline-", "latency-"))


def netfault_spec(settings: NetfaultSettings) -> Any:
    """Return the benchmark's service spec: one replica, a short batching window (so a request's own
    latency is small and steady), one torch thread."""
    from harness.chaos.experiment import merge_spec

    return merge_spec({"topology": "single", "service": {"model": settings.model, "max_queue_delay_ms": 2,
                                                         "warmup_iters": 1, "torch_threads": 1}})


def _fault(settings: NetfaultSettings, name: str, duration_s: float) -> dict[str, Any] | None:
    if name.startswith("latency"):
        return {"kind": "latency", "delay_ms": settings.latency_ms, "duration_s": duration_s}
    if name == "abort":
        return {"kind": "abort", "percent": settings.abort_percent, "status": settings.abort_status,
                "duration_s": duration_s, "seed": settings.seed}
    if name == "reset":
        return {"kind": "reset", "percent": settings.reset_percent, "duration_s": duration_s, "seed": settings.seed}
    return None  # a baseline


def run_netfault_bench(settings: NetfaultSettings, out_dir: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Deploy, load, inject each fault in its window, measure; return the result (also in ``out_dir/bench.json``).

    Raises ConfigError for bad settings, HarnessError when the deployment or the generator cannot run.
    Everything started is stopped on every way out (the deployment torn down, the generator ended).
    """
    from harness.chaos.loadgen import FLUSH_S, BackgroundLoad
    from harness.cpus import plan_cpus
    from harness.jsonfile import write_json
    from harness.load.heartbeat import heartbeat_for
    from harness.platforms import deploy
    from harness.platforms.base import read_state
    from harness.platforms.local.control import send_control

    settings.validate()
    say = progress or (lambda message: None)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cpus = plan_cpus()
    windows: dict[str, tuple[float, float]] = {}
    say(f"deploying one {settings.model} replica behind the balancer; open-loop load for about {settings.planned_s():.0f} s: "
        f"{settings.latency_pairs} baseline/latency pairs at {settings.latency_rate_rps:g} req/s, then abort"
        f"{' and reset' if settings.reset_requests else ''} at {settings.rate_rps:g} req/s")
    deployment = deploy(netfault_spec(settings), platform="local", workdir=out / "deployment", cpus=cpus.service)
    loads: list[Any] = []
    records: list = []
    try:
        deployment.wait_ready(timeout_s=120.0)
        state = read_state(deployment.state_path)
        names = list(settings.fault_windows_s())
        for phase, rate in (("latency", settings.latency_rate_rps), ("failures", settings.rate_rps)):
            load = BackgroundLoad("rate", deployment.endpoint, out / f"load-{phase}", rate_per_s=rate, model=settings.model,
                                  max_duration_s=settings.planned_s(phase) + 30.0, timeout_s=5.0, cpus=cpus.generator)
            loads.append(load)
            with heartbeat_for(load.requests_path, settings.planned_s(phase), progress):
                load.start()
                time.sleep(settings.settle_s)
                for name, length_s in settings.fault_windows_s().items():
                    if (phase == "latency") != _phase_of(name):
                        continue
                    duration_s = length_s + 2 * settings.guard_s
                    fault = _fault(settings, name, duration_s)
                    if fault is None:
                        start_s = time.time()
                    else:
                        start_s = float(send_control(state, "network_fault", **fault)["fault"]["time_s"])
                    windows[name] = (start_s + settings.guard_s, start_s + settings.guard_s + length_s)
                    say(f"[{names.index(name) + 1}/{len(names)}] {name}: {length_s:g} s at {rate:g} req/s"
                        + (f" ({', '.join(f'{k}={v:g}' for k, v in fault.items() if k not in ('kind', 'duration_s'))})"
                           if fault else ""))
                    time.sleep(max(0.0, start_s + duration_s + 0.3 - time.time()))  # the fault has ended by then
                time.sleep(FLUSH_S + 0.5)
                records += load.stop()
    finally:
        for load in loads:
            load.stop()
        deployment.close()
    result = _judge(settings, records, windows)
    result["machine"] = _machine()
    write_json(out / BENCH_FILE, result)
    return result


def window_figures(records: list, start_s: float, end_s: float, limit: int | None = None) -> dict[str, Any]:
    """Return the figures of the requests intended in ``[start_s, end_s)`` (the first ``limit`` when given):
    count, failed share in percent, p50 of the successful ones, statuses."""
    from harness.measure.percentiles import percentile

    chosen = sorted((r for r in records if start_s <= r.intended_s < end_s), key=lambda r: r.intended_s)
    chosen = chosen[:limit] if limit is not None else chosen
    failed = [r for r in chosen if not r.ok]
    statuses: dict[str, int] = {}
    for record in chosen:
        statuses[str(record.status)] = statuses.get(str(record.status), 0) + 1
    latencies = [r.latency_ms for r in chosen if r.ok]
    return {"requests": len(chosen), "failed": len(failed),
            "failed_pct": round(100.0 * len(failed) / len(chosen), 3) if chosen else None,
            "p50_ms": round(percentile(latencies, 50), 3) if latencies else None, "statuses": statuses,
            "_latencies": latencies}


def _judge(settings: NetfaultSettings, records: list, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    from harness.measure.percentiles import percentile

    limits = {"abort": settings.abort_requests, "reset": settings.reset_requests}
    figures = {name: window_figures(records, start, end, limits.get(name)) for name, (start, end) in windows.items()}
    pooled = {kind: [v for name, f in figures.items() if name.startswith(kind + "-") for v in f["_latencies"]]
              for kind in ("baseline", "latency")}
    baseline_p50 = percentile(pooled["baseline"], 50) if pooled["baseline"] else math.nan
    latency_p50 = round(percentile(pooled["latency"], 50), 3) if pooled["latency"] else None
    added_ms = (latency_p50 - baseline_p50) if latency_p50 is not None and pooled["baseline"] else None
    pairs = [figures[f"latency-{i}"]["p50_ms"] - figures[f"baseline-{i}"]["p50_ms"] for i in range(1, settings.latency_pairs + 1)
             if figures[f"latency-{i}"]["p50_ms"] is not None and figures[f"baseline-{i}"]["p50_ms"] is not None]
    shift_ms = statistics.median(pairs) if pairs else None
    abort = figures["abort"]
    checks = {
        "latency": {"claim_ms": settings.latency_ms, "baseline_p50_ms": round(baseline_p50, 3), "fault_p50_ms": latency_p50,
                    "added_ms": None if added_ms is None else round(added_ms, 3), "tolerance_ms": settings.latency_tolerance_ms,
                    "pair_added_ms": [round(d, 1) for d in pairs], "shift_ms": None if shift_ms is None else round(shift_ms, 3),
                    "within_tolerance": shift_ms is not None and abs(shift_ms - settings.latency_ms) <= settings.latency_tolerance_ms},
        "abort": {"claim_pct": settings.abort_percent, "requests": abort["requests"], "failed_pct": abort["failed_pct"],
                  "status_count": abort["statuses"].get(str(settings.abort_status), 0),
                  "tolerance_pct": settings.abort_tolerance_pct,
                  "within_tolerance": abort["requests"] == settings.abort_requests and abort["failed_pct"] is not None
                  and abs(abort["failed_pct"] - settings.abort_percent) <= settings.abort_tolerance_pct},
    }
    for figure in figures.values():
        figure.pop("_latencies")
    return {"benchmark": "netfault", "settings": asdict(settings), "windows": figures, "checks": checks,
            "all_within_tolerance": all(check["within_tolerance"] for check in checks.values()),
            "total_requests": len(records)}


def _machine() -> dict[str, Any]:
    from harness.environment import cpu_info

    load_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return {**cpu_info(), "cpus": os.cpu_count(), "load_average_1m": round(load_1m, 2)}


def format_netfault_table(result: dict[str, Any]) -> str:
    """Return the benchmark's table for people: one line per window, then each check."""
    lines = [f"{'window':<11} {'requests':>9} {'failed':>7} {'failed %':>9} {'p50 (ms)':>9}  statuses"]
    for name, row in result["windows"].items():
        p50 = "n/a" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
        failed_pct = "n/a" if row["failed_pct"] is None else f"{row['failed_pct']:.2f}"
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(row["statuses"].items()))
        lines.append(f"{name:<11} {row['requests']:>9} {row['failed']:>7} {failed_pct:>9} {p50:>9}  {statuses}")
    latency, abort = result["checks"]["latency"], result["checks"]["abort"]
    ok = lambda passed: "yes" if passed else "NO"  # noqa: E731
    shift = "n/a" if latency["shift_ms"] is None else f"{latency['shift_ms']:+.1f} ms"
    pooled = "n/a" if latency["added_ms"] is None else f"{latency['added_ms']:+.1f} ms"
    lines += [
        f"latency: p50 moved by {shift} (median of {len(latency['pair_added_ms'])} side-by-side pairs: "
        f"{', '.join(f'{d:+.1f}' for d in latency['pair_added_ms'])}; pooled {pooled}: {latency['fault_p50_ms']} vs "
        f"{latency['baseline_p50_ms']} ms) (claim +{latency['claim_ms']:g} ms, within +-{latency['tolerance_ms']:g} ms: "
        f"{ok(latency['within_tolerance'])})",
        f"abort: {abort['failed_pct']}% of {abort['requests']} requests failed, {abort['status_count']} answered "
        f"{result['settings']['abort_status']} (claim {abort['claim_pct']:g}%, within +-{abort['tolerance_pct']:g} points: "
        f"{ok(abort['within_tolerance'])})",
    ]
    machine = result.get("machine") or {}
    lines.append(f"machine: {machine.get('model', 'cpu')} ({machine.get('cpus')} CPUs), load average "
                 f"{machine.get('load_average_1m')}; {result['total_requests']} requests in all")
    return "\n".join(lines)
