"""Locust in its own distributed mode on this machine: one master and N worker processes.

`harness.load.locust_runner.run_locust` (``workers=N``) calls `run_locust_distributed`. Each process
is Locust's own (``python -m locust``; Locust is never imported here), started by
`harness.processes.spawn`, pinned to the generator's CPUs (all of them: the kernel spreads the
workers over the set), and bounded by a hard deadline:

- the **master** (``--master --headless --expect-workers N``, bound to 127.0.0.1 on a free port) runs
  the profile's shape (`harness.load.locustfile`), hands the users out to the workers, aggregates
  Locust's own statistics (``locust_*.csv``, ``locust_summary.json``, as one process writes them) and,
  when the shape ends, tells the workers to quit; it sends no request and records none;
- each **worker** (``--worker --master-host 127.0.0.1 --master-port P``) runs its share of the users and
  appends every request to its own records file, ``<out>/workers/<index>/requests.csv`` (the
  locustfile's recorder, flushed when the test stops and when the worker quits).

The workers' files are merged exactly into ``<out>/requests.csv``
(`harness.load.workers.merge_record_files`), so the percentiles are exact over every worker's records,
never Locust's bucketed ones (which stay beside them, in ``result.locust``). The generator's CPU is
judged per worker (one core each) and overall (`harness.load.workers.judge_generator`); the master's
own CPU is judged too (``the master`` in the findings).

**Workers elsewhere** (`ENV_MASTER_PORT` set, as the in-cluster runner's pod has it next to the
rendered worker Deployment, `harness.platforms.kubernetes.loadgen`): only the master runs here, bound
on every interface on that port; it hands the profile to the workers (the locustfile's
``--harness-profile``), the workers send their records to it in Locust messages, and it writes them
and, every second, each worker's CPU as its heartbeats report it (``locust_workers.jsonl``), from
which each worker and the whole are judged as above.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Mapping

from harness import processes
from harness.errors import ConfigError
from harness.load.cpu_sampler import CpuSampler, CpuStats, check_saturation
from harness.load.locust_runner import LOCUST_LOG, LOCUST_PREFIX, LOCUSTFILE, locust_argv, locust_figures
from harness.load.profiles import ENV_MODEL, ENV_PROFILE, ENV_REQUESTS_FILE, ENV_WORKERS_FILE, LoadProfile
from harness.load.result import LoadResult, no_records_error, result_from_records
from harness.load.workers import WORKERS_DIR, WorkerLoad, cpu_finding, generator_cores, judge_generator, merge_record_files, worker_dir
from harness.request_records import REQUESTS_FILE
from harness.signals import interrupts_held

__all__ = ["MASTER_HOST", "MASTER_PORT", "ENV_MASTER_PORT", "ENV_EXPECT_WORKERS", "WORKER_QUIT_S", "locust_worker_argv",
           "external_master", "run_locust_distributed", "reported_loads"]

MASTER_HOST = "127.0.0.1"
MASTER_PORT = 5557  # Locust's own default: where the rendered workers look for the runner's master
ENV_MASTER_PORT = "HARNESS_LOCUST_MASTER_PORT"  # set (the runner pod): the workers run elsewhere, on this port
ENV_EXPECT_WORKERS = "HARNESS_LOCUST_WORKERS"  # ... and this many of them (the rendered Deployment's replicas)
WORKER_QUIT_S = 15.0  # how long the workers may take to flush and quit once the master has ended
WORKER_LOG = "locust.log"
WORKERS_FILE = "locust_workers.jsonl"  # an external run's workers as the master saw them


def _free_port() -> int:
    # Locust binds the port it is given (and, for its web UI, no other here: headless); the moment between
    # this probe and the master's bind is the only window in which another process could take it
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((MASTER_HOST, 0))
        return int(sock.getsockname()[1])


def locust_worker_argv(locustfile: Path, master_host: str, master_port: int) -> list[str]:
    """Return the argv of one Locust worker of the harness's locustfile, connecting to the master given."""
    return processes.python_argv("locust", "-f", str(locustfile), "--worker", "--master-host", master_host,
                                 "--master-port", str(master_port), "--loglevel", "INFO")


def external_master(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """Return (port, workers) of a master whose workers run elsewhere (`ENV_MASTER_PORT`, `ENV_EXPECT_WORKERS`,
    default 1), None when the port is unset; raise ConfigError for a bad value."""
    env = os.environ if environ is None else environ
    port, count = env.get(ENV_MASTER_PORT, "").strip(), env.get(ENV_EXPECT_WORKERS, "").strip() or "1"
    if not port:
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(ENV_MASTER_PORT, port, "must be a TCP port from 1 to 65535")
    if not count.isdigit() or not 1 <= int(count) <= 1000:
        raise ConfigError(ENV_EXPECT_WORKERS, count, "must be a worker count from 1 to 1000")
    return int(port), int(count)


def run_locust_distributed(
    host: str, profile: LoadProfile, out: Path, *, workers: int, cpus: Iterable[int] | None, stop_timeout_s: float,
    limit_s: float, cpu_interval_s: float = 0.5, external_port: int | None = None,
) -> LoadResult:
    """Run ``profile`` against ``host`` from a Locust master and ``workers`` Locust workers; return the `LoadResult`
    of the merged records.

    ``external_port``: the workers run elsewhere (the rendered worker Deployment) and connect to the
    master on that port (bound on every interface); they send their records to the master. ``out``
    must be absolute; the master is killed if it runs past ``limit_s``. Raises HarnessError when no
    worker recorded a request (whatever the exit codes).
    """
    pinned = tuple(cpus) if cpus is not None else None
    dirs = [] if external_port else [worker_dir(out, index) for index in range(workers)]
    for stale in [*(d / REQUESTS_FILE for d in dirs), out / REQUESTS_FILE, out / WORKERS_FILE]:
        stale.unlink(missing_ok=True)
    port = external_port or _free_port()
    master_argv = locust_argv(host, profile, out, stop_timeout_s=stop_timeout_s) + [
        "--master", "--master-bind-host", "0.0.0.0" if external_port else MASTER_HOST, "--master-bind-port", str(port),
        "--expect-workers", str(workers), "--expect-workers-max-wait", str(max(int(limit_s - profile.duration_s), 1))]  # Locust takes whole seconds
    shared_env = {ENV_PROFILE: profile.to_env(), ENV_MODEL: profile.model, "PYTHONUNBUFFERED": "1"}
    # the master records only what workers elsewhere send it, and their CPU as they report it
    master_env = ({ENV_REQUESTS_FILE: str(out / REQUESTS_FILE), ENV_WORKERS_FILE: str(out / WORKERS_FILE)}
                  if external_port else {ENV_REQUESTS_FILE: None})
    cores = workers if external_port else generator_cores(workers, pinned)
    started_s = time.time()
    master = sampler = None
    procs: list[subprocess.Popen] = []
    hard_killed = False
    try:
        with interrupts_held():  # an interrupt lands only once every child is recorded here
            master = processes.spawn(master_argv, cpus=pinned, env={**shared_env, **master_env},
                                     log_path=out / LOCUST_LOG, cwd=out)
            for directory in dirs:
                procs.append(processes.spawn(locust_worker_argv(LOCUSTFILE, MASTER_HOST, port), cpus=pinned,
                                             env={**shared_env, ENV_REQUESTS_FILE: str(directory / REQUESTS_FILE)},
                                             log_path=directory / WORKER_LOG, cwd=directory))
            sampler = CpuSampler([p.pid for p in procs] + [master.pid], cpu_interval_s, cores=cores).start()
        code = processes.wait_bounded(master, limit_s)
        if code is None:
            hard_killed = True
            code = processes.stop(master)
        quit_by = time.monotonic() + WORKER_QUIT_S  # the master told them to quit: they flush and go
        for proc in procs:
            if processes.wait_bounded(proc, quit_by - time.monotonic()) is None:
                processes.stop(proc)
    finally:
        if sampler is not None:
            sampler.stop()
        for proc in [*procs, *([master] if master is not None else [])]:
            if proc.poll() is None:  # interrupted or failed above: never leave Locust running
                processes.stop(proc)
    files = [out / REQUESTS_FILE] if external_port else [d / REQUESTS_FILE for d in dirs]
    records, counts = merge_record_files(files, out / REQUESTS_FILE)
    if not records:
        log = out / LOCUST_LOG if external_port else dirs[0] / WORKER_LOG
        raise no_records_error(f"Locust's {workers} workers", out / REQUESTS_FILE, code, log)
    first = min(r.intended_s for r in records)
    last = max(r.intended_s + r.latency_ms / 1000.0 for r in records)
    if external_port:  # as many workers as connected (more than expected may have joined)
        loads, overall = reported_loads(out / WORKERS_FILE, first, last, cpu_interval_s)
        cores = max(cores, len(loads))
    else:
        loads = [_load(index, proc.pid, counts[index], sampler.stats_of(proc.pid, first, last))
                 for index, proc in enumerate(procs)]
        overall = sampler.stats(first, last)
    master_cpu = sampler.stats_of(master.pid, first, last)
    saturated, why = judge_generator(loads, overall, cores)
    if master_cpu.saturated:  # the master aggregates every worker's statistics: it can be the one that limits
        saturated, why = True, "; ".join(filter(None, [why, f"the master: {cpu_finding(master_cpu)}"]))
    summary_path = out / (LOCUST_PREFIX + "_summary.json")
    paths = {"requests": str(out / REQUESTS_FILE), "locust_csv_prefix": str(out / LOCUST_PREFIX),
             "locust_summary": str(summary_path), "locust_log": str(out / LOCUST_LOG),
             "workers": str(out / (WORKERS_FILE if external_port else WORKERS_DIR))}
    extra = {"profile": profile.model_dump(), "host": host, **locust_figures(summary_path), "workers": workers,
             "generator_cores": cores, "generator_cpus": None if external_port or not pinned else list(pinned),
             "saturated_why": why, "worker_loads": [w.to_dict() for w in loads], "master_cpu": master_cpu.to_dict()}
    result = result_from_records(records, source="locust", cpu=overall, exit_code=code,
                                 hard_killed=hard_killed, started_s=started_s, ended_s=time.time(), paths=paths,
                                 extra=extra)
    return replace(result, generator_saturated=saturated)


def reported_loads(path: Path, start_s: float, end_s: float, interval_s: float) -> tuple[list[WorkerLoad], CpuStats]:
    """Return each worker's load as its master recorded it (`ENV_WORKERS_FILE`: the CPU each worker's heartbeats
    reported, the records each sent) and the workers' CPU together (of one core each), in ``[start_s, end_s]``."""
    samples: dict[str, list[tuple[float, float]]] = {}
    received: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        data = json.loads(line)
        if "records" in data:
            received = {str(k): int(v) for k, v in data["records"].items()}
        else:
            samples.setdefault(str(data["worker"]), []).append((float(data["time_s"]), float(data["cpu_percent"])))
    ids = list(dict.fromkeys([*samples, *received]))
    loads = [_load(index, 0, received.get(worker, 0),
                   check_saturation(samples.get(worker, []), start_s, end_s, interval_s), name=worker)
             for index, worker in enumerate(ids)]
    totals: dict[float, float] = {}
    for points in samples.values():
        for t, percent in points:
            totals[t] = totals.get(t, 0.0) + percent
    overall = check_saturation(sorted(totals.items()), start_s, end_s, interval_s, cores=max(len(ids), 1))
    return loads, overall


def _load(index: int, pid: int, requests: int, cpu: CpuStats, name: str = "") -> WorkerLoad:
    why = cpu_finding(cpu)
    return WorkerLoad(index, pid, requests, cpu, bool(why), why, {"worker": name} if name else {})
