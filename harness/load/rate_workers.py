"""The open-loop rate generator across N worker processes, each sending a share of ONE schedule.

`run_rate` (``workers=N``) calls `run_rate_workers`. Every worker computes the whole schedule from the
same rate, duration, arrival process and seed (`harness.load.rate.schedule_offsets`) and sends
**arrival i when i % N is its index** (a round robin over the arrivals' order), starting on one
common clock. Why the round robin and not a thinned Poisson process (each arrival given to a worker
drawn at random):

- the merged timeline is exactly the one-process schedule of the same seed (the same arrivals, the
  same request numbers for the adapter, the same hosts when alternating), so the number of workers
  changes who sends, never what is sent: a probe at 2 workers and one at 1 offer the service the same
  arrivals, and a search that adds workers re-measures the same load;
- each worker sends exactly its 1/N (give or take one request), so no worker is busier by chance.

A round-robin share of a Poisson process is not itself Poisson (its gaps are Erlang), while thinning
would make each share Poisson; but nothing measures a share on its own. The service sees the merged
stream, which is the seeded Poisson (or constant) schedule either way.

How the workers start together: each is started by `harness.processes.spawn`, pinned to the
generator's CPUs (all of them: the kernel spreads the workers over the set), builds its schedule and
its HTTP session, says ``ready`` on stdout and waits; once all are ready the harness writes one start
time (epoch seconds, `START_MARGIN_S` ahead) to each one's stdin. The in-flight cap is shared too: the
workers together hold at most ``max_in_flight`` requests outstanding, as one process would. Each writes its own records,
summary and log under ``<out>/workers/<index>/``; the records are merged exactly into
``<out>/requests.csv`` (`harness.load.workers.merge_record_files`). **Schedule kept** is judged on the
merged timeline: the p99 of every sent request's lag (``sent_s - intended_s``, in the merged records)
within `harness.load.rate.LAG_TOLERANCE_MS`. Saturation is judged per worker (its CPU of one core, its
own share's lag) and overall (`harness.load.workers.judge_generator`).
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from harness import processes
from harness.errors import HarnessError
from harness.load.cpu_sampler import CpuSampler
from harness.load.rate import (
    LAG_TOLERANCE_MS, LOG_FILE, READY_LINE, SUMMARY_FILE, RateConfig, RateResult, ScheduleLag, rate_command, read_lag,
)
from harness.load.result import no_records_error, result_from_records
from harness.load.workers import WORKERS_DIR, WorkerLoad, cpu_finding, generator_cores, judge_generator, merge_record_files, worker_dir
from harness.measure.percentiles import percentiles
from harness.request_records import REQUESTS_FILE
from harness.signals import interrupts_held

__all__ = ["START_MARGIN_S", "run_rate_workers", "merged_lag"]

START_MARGIN_S = 0.2  # from the harness's "go" to the first scheduled send: time for every worker to read it


def run_rate_workers(config: RateConfig, out: Path, *, workers: int, cpus: Iterable[int] | None,
                     startup_grace_s: float) -> RateResult:
    """Run ``config`` from ``workers`` processes pinned to ``cpus``, each a share of the schedule; return the
    merged `RateResult` (its ``workers``: each process's `WorkerLoad`).

    ``out`` must be absolute. Raises HarnessError when a worker cannot start or get ready within
    ``startup_grace_s``, or when no worker recorded a request.
    """
    pinned = tuple(cpus) if cpus is not None else None
    dirs = [worker_dir(out, index) for index in range(workers)]
    for directory in dirs:
        for stale in (directory / REQUESTS_FILE, directory / SUMMARY_FILE):
            stale.unlink(missing_ok=True)
    cores = generator_cores(workers, pinned)
    started_s = time.time()
    procs: list[subprocess.Popen] = []
    sampler = None
    codes: list[int] = []
    hard_killed = False
    try:
        with interrupts_held():  # an interrupt lands only once every child is recorded here
            for index, directory in enumerate(dirs):
                argv = rate_command(_share_config(config, index, workers), directory) + [str(index), str(workers)]
                procs.append(processes.spawn(argv, cpus=pinned, log_path=directory / LOG_FILE,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE))
            sampler = CpuSampler([proc.pid for proc in procs], cores=cores).start()
        _await_ready(procs, dirs, time.monotonic() + startup_grace_s)
        start_epoch = time.time() + START_MARGIN_S
        for proc in procs:
            try:
                proc.stdin.write(f"{start_epoch!r}\n".encode())
                proc.stdin.close()
            except BrokenPipeError:  # it died since it said ready: no summary, said in its finding
                pass
        deadline = time.monotonic() + START_MARGIN_S + config.duration_s + config.timeout_s + startup_grace_s
        for proc in procs:
            code = processes.wait_bounded(proc, deadline - time.monotonic())
            if code is None:
                hard_killed = True
                code = processes.stop(proc)
            codes.append(code)
    finally:
        if sampler is not None:
            sampler.stop()
        _teardown(procs)
    records, counts = merge_record_files([d / REQUESTS_FILE for d in dirs], out / REQUESTS_FILE)
    code = next((c for c in codes if c != 0), 0 if codes else None)
    if not records:
        raise no_records_error(f"the rate generator's {workers} workers", out / REQUESTS_FILE, code, dirs[0] / LOG_FILE)
    first = min(r.intended_s for r in records)
    window = (first, first + config.duration_s)
    loads = [_worker_load(index, proc.pid, counts[index], sampler.stats_of(proc.pid, *window), dirs[index])
             for index, proc in enumerate(procs)]
    lag = merged_lag(records, [read_lag(d / SUMMARY_FILE, n) for d, n in zip(dirs, counts)],
                     finished=all((d / SUMMARY_FILE).exists() for d in dirs))
    overall = sampler.stats(*window)
    schedule = "" if lag.kept else (
        f"the merged schedule: p99 send lag {lag.p99_ms:.0f} ms > {LAG_TOLERANCE_MS:g} ms" if math.isfinite(lag.p99_ms)
        and lag.p99_ms > LAG_TOLERANCE_MS else "the merged schedule: a worker did not finish it")
    saturated, why = judge_generator(loads, overall, cores, schedule)
    summary_path = out / SUMMARY_FILE
    summary_path.write_text(json.dumps({
        "scheduled": lag.scheduled, "sent": lag.sent, "overflow": lag.overflow, "lag_p50_ms": lag.p50_ms,
        "lag_p99_ms": lag.p99_ms, "lag_max_ms": lag.max_ms, "lag_from": "the merged records (sent_s - intended_s)",
        "workers": [w.to_dict() for w in loads]}), encoding="utf-8")
    load = result_from_records(
        records, source="rate", cpu=overall, exit_code=code, hard_killed=hard_killed, started_s=started_s,
        ended_s=time.time(), paths={"requests": str(out / REQUESTS_FILE), "summary": str(summary_path),
                                    "log": str(dirs[0] / LOG_FILE), "workers": str(out / WORKERS_DIR)},
        extra={"rate_rps": config.rate_rps, "arrival": config.arrival, "schedule_kept": lag.kept,
               "workers": workers, "generator_cores": cores, "generator_cpus": list(pinned) if pinned else None,
               "saturated_why": why, "worker_loads": [w.to_dict() for w in loads]},
    )
    return RateResult(config=config, load=replace(load, generator_saturated=saturated), lag=lag, records=records,
                      workers=tuple(loads))


def _share_config(config: RateConfig, index: int, workers: int) -> RateConfig:
    """Return worker ``index``'s config: the run's, with its share of the in-flight cap (the N workers together
    hold at most ``max_in_flight`` requests outstanding, as one process would)."""
    base, extra = divmod(config.max_in_flight, workers)
    return config.model_copy(update={"max_in_flight": max(1, base + (1 if index < extra else 0))})


def merged_lag(records, worker_lags: list[ScheduleLag], *, finished: bool = True) -> ScheduleLag:
    """Return the schedule lag of the merged timeline: counts summed over the workers' summaries, lag
    percentiles over every sent request's ``sent_s - intended_s`` in ``records``; kept when that p99 is
    within `LAG_TOLERANCE_MS` and every worker ``finished`` (wrote its summary)."""
    lags = [(r.sent_s - r.intended_s) * 1000.0 for r in records if math.isfinite(r.sent_s)]
    found = percentiles(lags, (50, 99))
    p99 = found[99.0]
    return ScheduleLag(
        scheduled=sum(w.scheduled for w in worker_lags), sent=sum(w.sent for w in worker_lags),
        overflow=sum(w.overflow for w in worker_lags), p50_ms=found[50.0], p99_ms=p99,
        max_ms=max(lags, default=math.nan), kept=finished and math.isfinite(p99) and p99 <= LAG_TOLERANCE_MS,
    )


def _worker_load(index: int, pid: int, requests: int, cpu, directory: Path) -> WorkerLoad:
    lag = read_lag(directory / SUMMARY_FILE, requests)
    findings = [cpu_finding(cpu)]
    if not (directory / SUMMARY_FILE).exists():
        findings.append("it was stopped before it finished its share")
    elif not lag.kept:
        findings.append(f"its share's p99 send lag {lag.p99_ms:.0f} ms > {LAG_TOLERANCE_MS:g} ms")
    why = "; ".join(f for f in findings if f)
    extra = {"scheduled": lag.scheduled, "sent": lag.sent, "overflow": lag.overflow, "lag_p50_ms": lag.p50_ms,
             "lag_p99_ms": lag.p99_ms, "lag_max_ms": lag.max_ms, "schedule_kept": lag.kept}
    return WorkerLoad(index, pid, requests, cpu, bool(why), why, extra)


def _await_ready(procs: list[subprocess.Popen], dirs: list[Path], deadline: float) -> None:
    """Wait until every worker said it is ready; raise HarnessError naming one that exited or is late."""
    waiting = {proc.stdout.fileno(): index for index, proc in enumerate(procs)}
    pending = {fd: b"" for fd in waiting}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            index = waiting[next(iter(pending))]
            raise HarnessError(f"rate worker {index} of {len(procs)} was not ready in time; its log "
                               f"{dirs[index] / LOG_FILE} ends:\n{processes.log_tail(dirs[index] / LOG_FILE)}")
        ready, _, _ = select.select(list(pending), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 256)
            if not chunk:
                index = waiting[fd]
                raise HarnessError(f"rate worker {index} of {len(procs)} exited before it was ready; its log "
                                   f"{dirs[index] / LOG_FILE} ends:\n{processes.log_tail(dirs[index] / LOG_FILE)}")
            pending[fd] += chunk
            if READY_LINE + b"\n" in pending[fd]:
                del pending[fd]


def _teardown(procs: list[subprocess.Popen]) -> None:
    """Close every worker's pipes (an unstarted one reads the end of its stdin and stops), then stop each."""
    for proc in procs:
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None and not stream.closed:
                    stream.close()
            except OSError:
                pass
    for proc in procs:
        if proc.poll() is None:
            processes.stop(proc)
