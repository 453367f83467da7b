"""`harness bench loadgen`: how much more load does the open-loop generator send from N processes than from one?

One trivial endpoint (`harness.bench.trivialserver`: every request answered at once, a small fraction of
a client's cost per request) and, in the same run, the rate generator (`harness.load.rate.run_rate`)
from 1 worker process and from N (`harness.load.rate_workers`), both on the same CPUs (every CPU this
process may use: a one-process generator can use one of them). The figure of each worker count is
the **highest rate it kept up with**: a probe of ``warmup_s`` + ``probe_s`` seconds of Poisson arrivals
at a rate is *kept* when, over the requests scheduled after the warm-up (as a sweep's measurement
window is judged: the generator's start, its connections opening, is no part of what it measures),
the merged timeline kept the schedule (p99 send lag within `harness.load.rate.LAG_TOLERANCE_MS`) and
no request overflowed the in-flight cap or failed. A probe that was not kept is measured once
more and counts as kept if that one is (a burst of other work on a shared machine spoils a probe,
not the figure).

The search, both counts side by side: from ``start_rps`` up by ``growth`` per step, each step probing
each count still keeping up (1 then N, then N then 1, ...: a drift of the machine weighs on both), then
``refine`` bisections (geometric) of each count's bracket. The ratio is N's figure over 1's; it meets
the claim at ``min_ratio`` or more. A count that kept up to ``max_rps`` has a lower bound for its
figure, said as such.
"""

from __future__ import annotations

import math
import os
import select
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, HarnessError
from harness.validation import check_ranges

__all__ = ["LoadgenSettings", "run_loadgen_bench", "format_loadgen_table", "BENCH_FILE"]

Progress = Callable[[str], None]
BENCH_FILE = "bench.json"
SERVER_START_S = 30.0


@dataclass(frozen=True)
class LoadgenSettings:
    """The worker count, the search and the claim of the benchmark (see the module docstring)."""

    workers: int = 0  # 0: one per usable CPU, at least 2
    start_rps: float = 1000.0
    growth: float = 1.5
    refine: int = 3
    max_rps: float = 50_000.0
    probe_s: float = 2.0
    warmup_s: float = 1.0
    max_in_flight: int = 256
    seed: int = 0
    min_ratio: float = 1.2

    def validate(self) -> "LoadgenSettings":
        """Return self; raise ConfigError naming the first bad field and its value."""
        ranges = {"workers": (0, 64), "start_rps": (1, 100_000), "growth": (1.05, 10), "refine": (0, 10),
                  "max_rps": (1, 100_000), "probe_s": (0.5, 60), "warmup_s": (0, 60), "max_in_flight": (2, 100_000), "seed": (0, 2**31),
                  "min_ratio": (0, 64)}
        check_ranges(self, ranges)
        if self.workers == 1:
            raise ConfigError("workers", self.workers, "compares N processes with one: choose 2 or more (0: one per CPU)")
        if self.start_rps > self.max_rps:
            raise ConfigError("start_rps", self.start_rps, f"above max_rps={self.max_rps:g}")
        return self

    def worker_count(self) -> int:
        """Return N: ``workers``, or one per CPU this process may use (at least 2)."""
        if self.workers:
            return self.workers
        return max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2))


def run_loadgen_bench(settings: LoadgenSettings, out_dir: str | Path, *, progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Run the benchmark; write ``<out_dir>/bench.json`` and return its data.

    Raises ConfigError for bad settings, HarnessError when the endpoint or a generator cannot run.
    """
    from harness import processes
    from harness.cpus import usable_cpus
    from harness.jsonfile import write_json
    from harness.load.session import machine_info

    settings.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = settings.worker_count()
    cpus = usable_cpus() or None
    counts = (1, workers)
    started = time.monotonic()
    server = processes.spawn(processes.python_argv("harness.bench.trivialserver"), stdout=subprocess.PIPE,
                             log_path=out / "endpoint.log")
    try:
        url = _endpoint_url(server)
        progress(f"trivial endpoint at {url}; generator on CPU {cpus or 'any'}: 1 process against {workers}")
        search = _Search(settings, counts, lambda count, rate, tag: _probe(url, out, settings, cpus, count, rate, tag),
                         progress)
        search.climb()
        search.refine()
    finally:
        processes.stop(server)
        if server.stdout is not None:
            server.stdout.close()
    figures = {str(count): search.figure(count) for count in counts}
    one, many = search.lo.get(1), search.lo.get(workers)
    ratio = many / one if one and many else math.nan
    result = {
        "settings": asdict(settings), "workers": workers, "generator_cpus": cpus, "figures": figures,
        "ratio": None if math.isnan(ratio) else ratio, "meets_claim": math.isfinite(ratio) and ratio >= settings.min_ratio,
        "probes": search.probes, "machine": {**machine_info(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    write_json(out / BENCH_FILE, result)
    return result


def _endpoint_url(server: subprocess.Popen) -> str:
    deadline, line = time.monotonic() + SERVER_START_S, b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([server.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(server.stdout.fileno(), 64)
            if not chunk:
                break
            line += chunk
    if not line.startswith(b"PORT "):
        raise HarnessError(f"the trivial endpoint did not start (it said {line!r})")
    return f"http://127.0.0.1:{int(line.split()[1])}"


def _probe(url: str, out: Path, settings: LoadgenSettings, cpus, count: int, rate: float, tag: str) -> dict[str, Any]:
    from harness.load.rate import run_rate

    from harness.load.rate import LAG_TOLERANCE_MS, OVERFLOW_ERROR, run_rate, schedule_offsets
    from harness.measure.percentiles import percentile

    duration_s = settings.warmup_s + settings.probe_s
    result = run_rate(url, out / f"{count}w-{rate:.0f}rps{tag}", rate_rps=rate, duration_s=duration_s,
                      arrival="poisson", seed=settings.seed, timeout_s=2.0, max_in_flight=settings.max_in_flight,
                      cpus=cpus, workers=count)
    start_s = min(r.intended_s for r in result.records) - schedule_offsets(rate, duration_s, "poisson", settings.seed)[0]
    window = [r for r in result.records if r.intended_s >= start_s + settings.warmup_s]
    lags = [(r.sent_s - r.intended_s) * 1000.0 for r in window if math.isfinite(r.sent_s)]
    lag_p99 = percentile(lags, 99)
    overflow = sum(1 for r in window if r.error == OVERFLOW_ERROR)
    errors = sum(1 for r in window if not r.ok)
    kept = math.isfinite(lag_p99) and lag_p99 <= LAG_TOLERANCE_MS and errors == 0
    load = result.load
    return {"workers": count, "rate_rps": rate, "kept": kept, "requests": len(window), "errors": errors,
            "overflow": overflow, "lag_p99_ms": _round(lag_p99, 2), "generator_cpu_percent": _round(load.generator_cpu.mean_percent),
            "generator_saturated": load.generator_saturated, "why": load.extra.get("saturated_why", "") if not kept else ""}


def _round(value: float, digits: int = 1) -> float | None:
    return None if not math.isfinite(value) else round(value, digits)


class _Search:
    """Each count's bracket: the highest rate kept (``lo``) and the lowest rate not kept (``hi``)."""

    def __init__(self, settings: LoadgenSettings, counts: tuple[int, int], probe, progress: Progress) -> None:
        self.settings, self.counts, self.probe, self.say = settings, counts, probe, progress
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        self.probes: list[dict[str, Any]] = []

    def _measure(self, count: int, rate: float) -> None:
        found = self.probe(count, rate, "")
        if not found["kept"]:  # once more: a burst of other work spoils a probe, not the figure
            again = self.probe(count, rate, "-again")
            found = {**again, "retried": True, "first": found}
        self.probes.append(found)
        self.say(f"{count} process(es) at {rate:.0f} req/s: {'kept' if found['kept'] else 'NOT kept'} (lag p99 "
                 f"{found['lag_p99_ms']} ms, {found['overflow']} overflowed, {found['errors']} failed, CPU "
                 f"{found['generator_cpu_percent']}%)")
        if found["kept"]:
            self.lo[count] = max(self.lo.get(count, 0.0), rate)
        else:
            self.hi[count] = min(self.hi.get(count, math.inf), rate)

    def _order(self, step: int) -> tuple[int, ...]:
        return self.counts if step % 2 == 0 else tuple(reversed(self.counts))

    def climb(self) -> None:
        rate, step = self.settings.start_rps, 0
        while rate <= self.settings.max_rps and any(c not in self.hi for c in self.counts):
            for count in self._order(step):
                if count not in self.hi:
                    self._measure(count, rate)
            rate, step = rate * self.settings.growth, step + 1

    def refine(self) -> None:
        for step in range(self.settings.refine):
            for count in self._order(step):
                lo, hi = self.lo.get(count), self.hi.get(count)
                if lo is not None and hi is not None and hi > lo:
                    self._measure(count, math.sqrt(lo * hi))

    def figure(self, count: int) -> dict[str, Any]:
        lo, hi = self.lo.get(count), self.hi.get(count)
        return {"max_kept_rps": lo, "lowest_not_kept_rps": hi, "lower_bound": hi is None,
                "text": "none kept" if lo is None else (f"at least {lo:.0f}" if hi is None else f"{lo:.0f} (not {hi:.0f})")}


def format_loadgen_table(result: dict[str, Any]) -> str:
    """Return the benchmark's result for people: each count's figure, the ratio and the claim."""
    n = result["workers"]
    lines = [f"{'processes':>9}  {'highest rate kept (req/s)':<28} probes"]
    for count, figure in result["figures"].items():
        tried = sum(1 for p in result["probes"] if str(p["workers"]) == count)
        lines.append(f"{count:>9}  {figure['text']:<28} {tried}")
    ratio = "n/a" if result["ratio"] is None else f"{result['ratio']:.2f}x"
    claim = result["settings"]["min_ratio"]
    lines.append(f"{n} processes / 1 process: {ratio} (claim >= {claim:g}x: {'yes' if result['meets_claim'] else 'NO'})")
    machine = result.get("machine") or {}
    lines.append(f"generator CPUs {result['generator_cpus']}; machine: {machine.get('model', 'cpu')} "
                 f"({machine.get('cpu_count')} CPUs), load average {machine.get('load_average_1m')}; {result['elapsed_s']} s")
    return "\n".join(lines)
