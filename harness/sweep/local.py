"""The sweep and capacity backend on the local platform: deploy a configuration, measure it.

Each configuration is deployed once (`harness.platforms.deploy`) and serves every load level. Rate
load comes from the rate generator (`harness.load.rate`: open loop, Poisson arrivals from a seed,
latency from the scheduled send time) in its own process, pinned to other cores than the service
where the machine has them. One generator run covers a warm-up and one or more windows; the windows
are cut from its per-request records by send time (`harness.measure.percentiles.summarize_windows`),
and the replicas' CPU and RSS (and GPU where present) come from `harness.measure.telemetry` over the
same window. Concurrency load (closed loop: N clients, each sending its next request when the last
one answered, as perf_analyzer does) comes from the benchmark's closed-loop generator
(`harness.load.closed_loop`, pinned likewise), one window per line it is sent; its latency runs from
each request's own send time. With one replica the load goes to the replica directly, so the front balancer's own CPU does
not share the measured core; with several it goes through the balancer, as users' traffic would.

**The generator scales itself** (`LocalSession.measure`). A rate run whose generator was the bottleneck
in a window (its CPU saturated, or its p99 send lag over the tolerance) is run again at once, on the
same seeded schedule, from twice as many worker processes (`harness.load.rate_workers`), up to one per
generator CPU (`harness.cpus.plan_cpus` says which), while the probe's time allows; the session keeps
the count it reached for the rates after it. Only when the most workers the CPUs allow (or the time
left) still could not keep up is the window marked ``generator_saturated``, with why in words
(``generator_detail``): the search then reports the rate as ``generator-limited``, a lower bound.
"""

from __future__ import annotations

import json
import math
import os
import select
import statistics
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness import processes
from harness.config import ServiceConfig, ServiceSpec
from harness.cpus import CpuPlan, plan_cpus
from harness.errors import DeploymentError, HarnessError
from harness.sweep.grid import CONCURRENCY, RATE, SweepPlan, WindowMeasurement
from harness.signals import interrupts_held
from harness.sweep.points import GENERATOR_START_S, PointTimeout, Precheck

__all__ = ["LocalSession", "LocalSweepBackend"]

ARRIVAL = "poisson"
TELEMETRY_INTERVAL_S = 0.5
LAG_TOLERANCE_MS = 50.0  # as the rate generator's own rule: p99 send lag above this is a lagging generator
CLIENT_SATURATED_PERCENT = 90.0  # a closed-loop generator this busy limits what it measures
CLOSED_RERUN_WARMUP_S = 0.3  # each closed-loop window opens its connections anew


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


class LocalSession:
    """One deployed configuration: a pre-check of its speed, and open-loop measurement windows."""

    def __init__(self, deployment, target: str, plan: SweepPlan, max_batch_size: int, workdir: Path,
                 generator_cpus: list[int] | None, sampler) -> None:
        self.deployment = deployment
        self.target = target
        self.plan = plan
        self.max_batch_size = max_batch_size
        self.workdir = workdir
        self.generator_cpus = generator_cpus
        self.sampler = sampler
        self.runs = 0
        self.protocol = None  # what the rate load sends (None: oip-v2 to the plan's model; harness.sweep.specsearch)
        self.token_slo = None  # generative: each window's good share under it (harness.measure.tokens)
        self.workers = 1  # the rate generator's processes: doubled while it limits a run, up to max_workers
        from harness.load.workers import generator_cores

        self.max_workers = generator_cores(64, generator_cpus)  # one per generator CPU

    def precheck(self, timeout_s: float) -> Precheck:
        """Time single requests of 1 and of max_batch_size samples; return the (optimistic) capacity they imply.

        A full batch in one request runs at once (no queue delay), so its latency is one forward plus
        the HTTP cost. Raises PointTimeout when a request does not answer within the time left.
        """
        from harness.service.client import ServiceUnreachable, infer
        from harness.service.registry import example_request

        deadline = time.monotonic() + timeout_s
        timings: dict[int, float] = {}
        for samples, repeats in ((1, 3), (self.max_batch_size, 2)):
            if samples in timings:
                continue
            body = example_request(self.plan.model, samples, seed=samples)
            times = []
            for _ in range(repeats):
                remaining = deadline - time.monotonic()
                if remaining <= 0.05:
                    break
                started = time.monotonic()
                try:
                    status, reply = infer(self.target, self.plan.model, body, timeout_s=remaining)
                except ServiceUnreachable as exc:
                    raise PointTimeout(f"a request of {samples} sample(s) did not answer within {remaining:.0f} s") from exc
                if status != 200:
                    raise HarnessError(f"pre-check request of {samples} sample(s) answered {status}: {reply.get('error', reply)}")
                times.append((time.monotonic() - started) * 1000.0)
            if not times:
                break
            timings[samples] = min(times)  # the best case: skip only what cannot fit even then
        if 1 not in timings:
            raise PointTimeout(f"no pre-check request fitted in {timeout_s:g} s")
        capacity = max(samples * 1000.0 / ms for samples, ms in timings.items())
        detail = ", ".join(f"{s} sample(s) in {ms:.0f} ms" for s, ms in sorted(timings.items()))
        return Precheck(capacity, f"{detail}: ~{capacity:.0f} requests/s")

    def measure(self, level: float, *, warmup_s: float, window_s: float, count: int, timeout_s: float,
                mode: str = RATE) -> list[WindowMeasurement]:
        """Run the load at ``level`` (rps, or closed-loop clients in concurrency mode) for a warm-up and
        ``count`` windows; return the windows.

        Raises PointTimeout when the run cannot fit ``timeout_s``, HarnessError when it fails.
        """
        if mode == CONCURRENCY:
            return self._measure_clients(int(level), warmup_s=warmup_s, window_s=window_s, count=count,
                                         timeout_s=timeout_s)
        from harness.load.rate import run_rate

        duration_s = warmup_s + count * window_s
        request_timeout_s = min(self.plan.request_timeout_s, max(1.0, timeout_s - duration_s - 2.0))
        grace_s = timeout_s - duration_s - request_timeout_s
        if grace_s < 1.0:
            raise PointTimeout(f"{duration_s:g} s of load does not fit the {timeout_s:.0f} s left")
        deadline = time.monotonic() + timeout_s
        seed = self.plan.seed + self.runs + 1  # a re-run with more workers sends the same arrivals
        while True:
            self.runs += 1
            started = time.monotonic()
            result = run_rate(
                self.target, self.workdir / f"load-{self.runs:03d}-{level:g}rps", rate_rps=level, duration_s=duration_s,
                arrival=ARRIVAL, seed=seed, model=self.plan.model, batch_size=1, timeout_s=request_timeout_s,
                max_in_flight=256, cpus=self.generator_cpus, startup_grace_s=min(20.0, grace_s), workers=self.workers,
                protocol=self.protocol,
            )
            more = min(self.workers * 2, self.max_workers)
            # another run must fit what is left: as long as this one took (start, load, draining), and its bounds
            left_s = deadline - time.monotonic()
            grace_s = left_s - duration_s - request_timeout_s
            fits = left_s >= time.monotonic() - started + GENERATOR_START_S and grace_s >= 1.0
            windows = self._rate_windows(result, level, seed, warmup_s=warmup_s, window_s=window_s, count=count,
                                         last=more <= self.workers or not fits)
            if not any(w.generator_saturated for w in windows) or more <= self.workers or not fits:
                return windows
            self.workers = more  # the generator limited this run: again, from more processes

    def _rate_windows(self, result, level: float, seed: int, *, warmup_s: float, window_s: float, count: int,
                      last: bool) -> list[WindowMeasurement]:
        """Cut a rate run into its windows; a window where the generator could not keep up says why."""
        from harness.load.rate import schedule_offsets
        from harness.load.workers import cpu_finding
        from harness.measure.overload import backlog_growth
        from harness.measure.percentiles import percentile, summarize_windows

        records = result.records
        duration_s = warmup_s + count * window_s
        first_offset = schedule_offsets(level, duration_s, ARRIVAL, seed)[0]
        start_s = min(r.intended_s for r in records) - first_offset
        summaries = summarize_windows(records, start_s=start_s + warmup_s, window_s=window_s, count=count)
        telemetry = self.sampler.rows() if self.sampler is not None else []
        cpu_why = result.load.extra.get("saturated_why") or cpu_finding(result.load.generator_cpu)
        where = (f"{self.workers} worker process(es) on CPU {list(self.generator_cpus) if self.generator_cpus else 'any'}"
                 + (", the most the generator CPUs allow" if self.workers >= self.max_workers else
                    ", no time left in the probe for more" if last else ""))
        windows = []
        for index, summary in enumerate(summaries):
            lo = start_s + warmup_s + index * window_s
            hi = lo + window_s
            inside = [r for r in records if lo <= r.intended_s < hi]
            lags = [(r.sent_s - r.intended_s) * 1000.0 for r in inside if math.isfinite(r.sent_s)]
            lag_p99 = percentile(lags, 99) if lags else math.nan
            lagging = bool(lags) and lag_p99 > LAG_TOLERANCE_MS
            saturated = lagging or result.cpu_saturated
            findings = [f"p99 send lag {lag_p99:.0f} ms > {LAG_TOLERANCE_MS:g} ms" if lagging else "",
                        cpu_why if result.cpu_saturated else ""]
            cpu, rss, gpu_util, gpu_mem = _telemetry_in(telemetry, lo, hi)
            tokens = self._tokens(inside, window_s)
            windows.append(WindowMeasurement(
                **tokens, throughput_rps=summary.throughput_rps, p50_ms=summary.p50_ms, p95_ms=summary.p95_ms,
                p99_ms=summary.p99_ms, error_rate=summary.error_rate if summary.count else 1.0,
                requests=summary.count, sent_rate_rps=summary.request_rate_rps,
                generator_saturated=saturated, backlog_growth=backlog_growth(records, lo, hi),
                generator_workers=self.workers,
                generator_detail=f"{'; '.join(f for f in findings if f)} with {where}" if saturated else "",
                cpu_percent=cpu, rss_mb=rss, gpu_util_percent=gpu_util, gpu_memory_mb=gpu_mem,
                started_s=lo, duration_s=window_s,
            ))
        return windows

    def _tokens(self, records, window_s: float) -> dict[str, float]:
        """Return a window's token fields: its good share, goodput, TTFT and ITL p99 (none without a token SLO)."""
        if self.token_slo is None:
            return {}
        from harness.measure.tokens import summarize_tokens
        from harness.slo import Slo

        t = summarize_tokens(records, Slo(self.plan.p99_ms, self.plan.max_error_rate), self.token_slo, duration_s=window_s)
        return {"good_share": t.good_share, "goodput_rps": t.goodput_rps, "ttft_p99_ms": t.ttft_ms.get(99.0, math.nan),
                "itl_p99_ms": t.itl_ms.get(99.0, math.nan)}

    def _measure_clients(self, clients: int, *, warmup_s: float, window_s: float, count: int,
                         timeout_s: float) -> list[WindowMeasurement]:
        """Run ``clients`` closed-loop clients for a warm-up and ``count`` windows; return the windows."""
        duration_s = warmup_s + count * (window_s + CLOSED_RERUN_WARMUP_S)
        if timeout_s < duration_s + 2.0:
            raise PointTimeout(f"{duration_s:g} s of load does not fit the {timeout_s:.0f} s left")
        self.runs += 1
        workdir = self.workdir / f"clients-{self.runs:03d}-{clients}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = processes.python_argv("harness.load.closed_loop", "--windows", "--model", self.plan.model,
                                     "--concurrency", str(clients))
        requests = "".join(json.dumps({"url": self.target, "duration_s": window_s,
                                       "warmup_s": warmup_s if index == 0 else CLOSED_RERUN_WARMUP_S}) + "\n"
                           for index in range(count))
        deadline = time.monotonic() + timeout_s
        proc = None
        try:
            with interrupts_held():  # a teardown below always finds the child
                proc = processes.spawn(argv, cpus=self.generator_cpus, log_path=workdir / "loadgen.log",
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            proc.stdin.write(requests.encode("utf-8"))
            proc.stdin.close()
            results = []
            for arrived_s, line in _lines(proc.stdout, deadline, what=f"{clients} closed-loop client(s)"):
                data = json.loads(line)
                if "requests_ok" in data:
                    results.append((arrived_s, data))
                if len(results) == count:
                    break
        finally:
            if proc is not None:
                processes.stop(proc, grace_s=1.0)
                proc.stdout.close()
        if len(results) < count:
            tail = processes.log_tail(workdir / "loadgen.log")
            raise HarnessError(f"the closed-loop generator returned {len(results)} of {count} windows: {tail}")
        telemetry = self.sampler.rows() if self.sampler is not None else []
        windows = []
        for arrived_s, data in results:
            ok, errors = int(data["requests_ok"]), int(data["errors"])
            lo, hi = arrived_s - window_s, arrived_s
            cpu, rss, gpu_util, gpu_mem = _telemetry_in(telemetry, lo, hi)
            windows.append(WindowMeasurement(
                throughput_rps=float(data["requests_per_s"]), p50_ms=_number(data.get("p50_ms")),
                p95_ms=_number(data.get("p95_ms")), p99_ms=_number(data.get("p99_ms")),
                error_rate=errors / (ok + errors) if ok + errors else 1.0, requests=ok + errors,
                sent_rate_rps=(ok + errors) / window_s,  # closed loop: what was asked is what completed
                generator_saturated=float(data.get("client_cpu_percent") or 0.0) > CLIENT_SATURATED_PERCENT,
                cpu_percent=cpu, rss_mb=rss, gpu_util_percent=gpu_util, gpu_memory_mb=gpu_mem,
                started_s=lo, duration_s=window_s,
            ))
        return windows


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _lines(stream, deadline: float, what: str) -> Iterator[tuple[float, bytes]]:
    """Yield (epoch time of arrival, line) from a child's stdout until EOF; PointTimeout past ``deadline``."""
    fd, buffer = stream.fileno(), b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PointTimeout(f"{what} did not finish within the point's time bound")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield time.time(), line


def _telemetry_in(rows: list[dict], lo: float, hi: float) -> tuple[float, float, float, float]:
    """Return the medians over [lo, hi] of the replicas' summed CPU% and RSS, and of GPU util and memory."""
    by_time: dict[float, dict[str, float]] = {}
    for row in rows:
        t = row.get("time_s")
        if t is None or not lo <= t <= hi:
            continue
        sample = by_time.setdefault(t, {"cpu": 0.0, "rss": 0.0, "cpu_n": 0, "util": [], "mem": 0.0, "mem_n": 0})
        if str(row.get("replica", "")).startswith("gpu:"):
            if row.get("gpu_util_percent") is not None:
                sample["util"].append(row["gpu_util_percent"])
            continue
        if row.get("cpu_percent") is not None:
            sample["cpu"] += row["cpu_percent"]
            sample["cpu_n"] += 1
        if row.get("rss_mb") is not None:
            sample["rss"] += row["rss_mb"]
        if row.get("gpu_memory_used_mb") is not None:
            sample["mem"] += row["gpu_memory_used_mb"]
            sample["mem_n"] += 1
    samples = list(by_time.values())
    cpu = _median([s["cpu"] for s in samples if s["cpu_n"]])
    rss = _median([s["rss"] for s in samples if s["rss"] > 0])
    util = _median([statistics.mean(s["util"]) for s in samples if s["util"]])
    mem = _median([s["mem"] for s in samples if s["mem_n"]])
    return cpu, rss, util, mem


class LocalSweepBackend:
    """Deploys each configuration on the local platform (the `SweepBackend` of `harness.sweep.points`)."""

    def __init__(self, plan: SweepPlan, workdir: str | Path, *, replicas: int = 1,
                 cpus: CpuPlan | None = None, telemetry: bool = True, direct: bool | None = None) -> None:
        cpus = cpus if cpus is not None else plan_cpus(replicas=replicas)  # where the service and the generator run
        self.plan = plan
        self.workdir = Path(workdir)
        self.replicas = replicas
        self.service_cpus = cpus.service
        self.generator_cpus = cpus.generator
        self.telemetry = telemetry
        # direct: load goes to the replica itself (one replica only); else through the front balancer
        self.direct = (replicas == 1) if direct is None else (direct and replicas == 1)

    def spec(self, precision: str, max_batch_size: int) -> ServiceSpec:
        """Return the service spec of one configuration."""
        service = ServiceConfig(
            model=self.plan.model, precision=precision, max_batch_size=max_batch_size,
            max_queue_delay_ms=self.plan.max_queue_delay_ms, torch_threads=self.plan.torch_threads,
            seed=self.plan.seed, device="auto",
        )
        topology = "single" if self.replicas == 1 else "multi-active"
        name = f"sweep-{precision}-b{max_batch_size}-r{self.replicas}"
        return ServiceSpec(name=name, service=service, topology=topology, replicas=self.replicas)

    @contextmanager
    def open(self, precision: str, max_batch_size: int, *, ready_timeout_s: float) -> Iterator[LocalSession]:
        """Deploy, wait Ready, yield a `LocalSession`; always tear down. Raises PointTimeout or DeploymentError."""
        from harness.measure.telemetry import TelemetrySampler
        from harness.platforms import deploy

        spec = self.spec(precision, max_batch_size)
        workdir = self.workdir / spec.name
        deployment = deploy(spec, platform="local", workdir=workdir, cpus=self.service_cpus)
        sampler = None
        try:
            try:
                deployment.wait_ready(timeout_s=ready_timeout_s)
            except DeploymentError as exc:
                if "timed out" in str(exc):
                    raise PointTimeout(f"not Ready within {ready_timeout_s:g} s: {str(exc).splitlines()[0]}") from exc
                raise
            replicas = deployment.replicas()
            target = replicas[0].url if self.direct and replicas[0].url else deployment.endpoint
            if self.telemetry:
                sampler = TelemetrySampler(workdir / "telemetry.csv",
                                           lambda: {r.name: r.pid for r in deployment.replicas()},
                                           interval_s=TELEMETRY_INTERVAL_S).start()
            yield LocalSession(deployment, target, self.plan, max_batch_size, workdir, self.generator_cpus, sampler)
        finally:
            if sampler is not None:
                sampler.stop()
            deployment.close()
