"""`harness bench loadgen --generator locust`: Locust's distributed mode (a master and N workers) against one
Locust process, driving the same trivial endpoint.

Locust is closed-loop: ``users`` users, no think time, each sending its next request when the last is
answered, so what a run shows is the **throughput** the generator reaches: the requests answered
(successfully) among those sent in the judged window, ``probe_s`` seconds from ``warmup_s`` after
the first request (the users' start and connections are no part of it), per second. One Locust
process (`harness.load.locust_runner.run_locust`) and a master with N workers
(`harness.load.locust_distributed`) run alternately, 1, N, N, 1, ... (a drift of the machine weighs
on both), ``rounds`` times each, on the same CPUs (every CPU this process may use); each count's
figure is the median of its runs, and the ratio is N's over 1's. Each run keeps its records, merged
exactly from every worker, under ``<out>/locust-<count>w-<round>/``.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.validation import check_ranges

__all__ = ["LocustBenchSettings", "run_locust_bench", "format_locust_table", "window_throughput"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LocustBenchSettings:
    """The worker count, the runs and the claim of the Locust benchmark (see the module docstring)."""

    workers: int = 0  # 0: one per usable CPU, at least 2
    users: int = 64
    probe_s: float = 4.0
    warmup_s: float = 2.0
    rounds: int = 2
    min_ratio: float = 1.2

    def validate(self) -> "LocustBenchSettings":
        """Return self; raise ConfigError naming the first bad field and its value."""
        ranges = {"workers": (0, 64), "users": (1, 10_000), "probe_s": (1, 600), "warmup_s": (0, 60), "rounds": (1, 20),
                  "min_ratio": (0, 64)}
        check_ranges(self, ranges)
        for name in ("workers", "users", "rounds"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(name, getattr(self, name), "must be a whole number")
        if self.workers == 1:
            raise ConfigError("workers", self.workers, "compares N processes with one: choose 2 or more (0: one per CPU)")
        return self

    def worker_count(self) -> int:
        """Return N: ``workers``, or one per CPU this process may use (at least 2)."""
        if self.workers:
            return self.workers
        return max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2))


def window_throughput(records: list, warmup_s: float, probe_s: float) -> tuple[float, int]:
    """Return (answered requests per second, requests sent) over the window ``[t0 + warmup_s, t0 + warmup_s +
    probe_s)`` of send times, ``t0`` the first request's: only successful answers count toward the rate."""
    if not records:
        return 0.0, 0
    start = min(r.intended_s for r in records) + warmup_s
    window = [r for r in records if start <= r.intended_s < start + probe_s]
    return sum(1 for r in window if r.ok) / probe_s, len(window)


def run_locust_bench(settings: LocustBenchSettings, out_dir: str | Path, *,
                     progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Run the benchmark; write ``<out_dir>/bench.json`` and return its data.

    Raises ConfigError for bad settings, HarnessError when the endpoint or Locust cannot run.
    """
    from harness import processes
    from harness.bench.loadgen import BENCH_FILE, _endpoint_url
    from harness.cpus import usable_cpus
    from harness.jsonfile import write_json
    from harness.load.locust_runner import run_locust
    from harness.load.profiles import LoadProfile
    from harness.load.session import machine_info
    from harness.request_records import RequestRecord, read_records

    settings.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = settings.worker_count()
    cpus = usable_cpus() or None
    profile = LoadProfile(kind="steady", users=settings.users, spawn_rate=float(settings.users), think_time_s=0.0,
                          duration_s=settings.warmup_s + settings.probe_s + 0.5, request_timeout_s=5.0)
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    server = processes.spawn(processes.python_argv("harness.bench.trivialserver"), stdout=subprocess.PIPE,
                             log_path=out / "endpoint.log")
    try:
        url = _endpoint_url(server)
        progress(f"trivial endpoint at {url}; Locust on CPU {cpus or 'any'}: 1 process against a master and "
                 f"{workers} workers, {settings.users} users, {settings.rounds} run(s) each")
        for round_index in range(settings.rounds):
            for count in ((1, workers) if round_index % 2 == 0 else (workers, 1)):
                load = run_locust(url, profile, out / f"locust-{count}w-{round_index}", cpus=cpus, workers=count)
                records = list(read_records(Path(load.paths["requests"]), RequestRecord))
                rate, sent = window_throughput(records, settings.warmup_s, settings.probe_s)
                why = (load.extra.get("saturated_why") or "CPU above 90% of a core") if load.generator_saturated else ""
                runs.append({"workers": count, "round": round_index, "throughput_rps": round(rate, 1), "requests": sent,
                             "errors": load.errors, "generator_cpu_percent": _round(load.generator_cpu.mean_percent),
                             "generator_saturated": load.generator_saturated, "why": why})
                progress(f"{count} process(es){' (+ master)' if count > 1 else ''}: {rate:.0f} req/s answered, CPU "
                         f"{runs[-1]['generator_cpu_percent']}%{f' ({why})' if why else ''}")
    finally:
        processes.stop(server)
        if server.stdout is not None:
            server.stdout.close()
    figures = {str(count): _figure([r for r in runs if r["workers"] == count]) for count in (1, workers)}
    one, many = figures["1"]["throughput_rps"], figures[str(workers)]["throughput_rps"]
    ratio = many / one if one else math.nan
    result = {
        "generator": "locust", "settings": asdict(settings), "workers": workers, "generator_cpus": cpus,
        "figures": figures, "ratio": None if math.isnan(ratio) else ratio,
        "meets_claim": math.isfinite(ratio) and ratio >= settings.min_ratio, "runs": runs,
        "machine": {**machine_info(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    write_json(out / BENCH_FILE, result)
    return result


def _figure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rate = statistics.median(r["throughput_rps"] for r in runs)
    return {"throughput_rps": rate, "runs_rps": [r["throughput_rps"] for r in runs],
            "saturated_runs": sum(1 for r in runs if r["generator_saturated"]), "text": f"{rate:.0f}"}


def _round(value: float, digits: int = 1) -> float | None:
    return None if not math.isfinite(value) else round(value, digits)


def format_locust_table(result: dict[str, Any]) -> str:
    """Return the Locust benchmark's result for people: each count's throughput, the ratio and the claim."""
    n = result["workers"]
    lines = [f"{'processes':>9}  {'answered (req/s, median)':<26} runs (req/s)"]
    for count, figure in result["figures"].items():
        label = count if count == "1" else f"{count}+m"  # a master beside the N workers
        lines.append(f"{label:>9}  {figure['text']:<26} {', '.join(f'{r:.0f}' for r in figure['runs_rps'])}")
    ratio = "n/a" if result["ratio"] is None else f"{result['ratio']:.2f}x"
    claim = result["settings"]["min_ratio"]
    lines.append(f"Locust, {n} workers / 1 process: {ratio} (claim >= {claim:g}x: {'yes' if result['meets_claim'] else 'NO'})")
    machine = result.get("machine") or {}
    lines.append(f"generator CPUs {result['generator_cpus']}; machine: {machine.get('model', 'cpu')} "
                 f"({machine.get('cpu_count')} CPUs), load average {machine.get('load_average_1m')}; {result['elapsed_s']} s")
    return "\n".join(lines)
