"""Run the harness's locustfile headless in its own process and turn its records into a `LoadResult`.

Locust is never imported here: it runs as ``python -m locust`` in a child process (own session, pinned
to the CPUs given), bounded by a hard deadline. Every request lands in a per-request CSV written by
the locustfile; percentiles are computed exactly from it with `harness.measure.percentiles`. Locust's
own CSVs (``<prefix>_stats.csv`` ...) and final JSON summary are kept beside it; Locust's own figures
(`locust_figures`) come from the summary, which Locust writes last. ``workers`` > 1 runs Locust's own
distributed mode instead, a master and that many worker processes (`harness.load.locust_distributed`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

from harness import processes
from harness.errors import ConfigError
from harness.load.cpu_sampler import CpuSampler
from harness.load.profiles import ENV_MODEL, ENV_PROFILE, ENV_REQUESTS_FILE, LoadProfile
from harness.load.result import LoadResult, no_records_error, result_from_records
from harness.paths import resolve_path
from harness.request_records import REQUESTS_FILE, RequestRecord, read_records
from harness.signals import interrupts_held

__all__ = ["LOCUSTFILE", "LOCUST_PREFIX", "locust_argv", "locust_command", "locust_figures", "run_locust"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_PREFIX = "locust"  # <out>/locust_stats.csv, locust_stats_history.csv, locust_failures.csv, ...
LOCUST_LOG = "locust.log"
STARTUP_GRACE_S = 30.0  # Locust's imports take seconds on a busy machine; the deadline allows for it
MAX_WORKERS = 64  # Locust worker processes of one run


def locust_argv(host: str, profile: LoadProfile, out_dir: Path, *, stop_timeout_s: float) -> list[str]:
    """Return the argv that runs the harness's locustfile headless against ``host`` for ``profile``.

    No ``--run-time``: the profile's shape ends the test (Locust starts the run-time timer only after a
    shape finishes, so it cannot act as a backstop); the hard deadline in `run_locust` is the backstop.
    """
    prefix = str(out_dir / LOCUST_PREFIX)
    return processes.python_argv(
        "locust",
        "-f", str(LOCUSTFILE),
        "--headless",
        "--host", host,
        "--stop-timeout", f"{stop_timeout_s:g}",
        "--csv", prefix,
        "--json-file", prefix + "_summary",
        "--only-summary",
        "--loglevel", "INFO",
    )


def locust_command(host: str, profile: LoadProfile, out_dir: Path, *,
                   stop_timeout_s: float) -> tuple[list[str], dict[str, str]]:
    """Return the argv and the environment that run ``profile`` against ``host`` with the harness's
    locustfile, writing every request to ``<out_dir>/requests.csv`` (Locust's own files beside it).

    The one builder of a Locust run: `run_locust` and the chaos run's background load
    (`harness.chaos.loadgen`) start what it returns. ``out_dir`` must be absolute (the child runs in it).
    """
    env = {
        ENV_PROFILE: profile.to_env(),
        ENV_MODEL: profile.model,
        ENV_REQUESTS_FILE: str(out_dir / REQUESTS_FILE),
        "PYTHONUNBUFFERED": "1",
    }
    return locust_argv(host, profile, out_dir, stop_timeout_s=stop_timeout_s), env


def locust_figures(summary_path: Path) -> dict[str, object]:
    """Return Locust's own final figures from the summary it writes last (``--json-file``), {} without one.

    ``locust_requests`` / ``locust_failures``: its counts over every entry; ``locust_p50_ms`` /
    ``locust_p95_ms`` / ``locust_p99_ms``: its percentiles of the whole run by its own rule (the
    smallest of its rounded response-time buckets that at most ``(1 - q)`` of the timed requests
    exceed; failures included), for comparison with the exact figures only. Not the stats CSV: Locust
    rewrites that every few seconds, and its last snapshot misses the requests of the run's end.
    """
    try:
        entries = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, list):
        return {}
    buckets: Counter[float] = Counter()
    timed = 0  # requests with a response time: Locust leaves out those it could not time
    for entry in entries:
        for bucket, count in (entry.get("response_times") or {}).items():
            buckets[float(bucket)] += int(count)
        timed += int(entry.get("num_requests", 0)) - int(entry.get("num_none_requests", 0) or 0)
    figures: dict[str, object] = {
        "locust_requests": sum(int(e.get("num_requests", 0)) for e in entries),
        "locust_failures": sum(int(e.get("num_failures", 0)) for e in entries),
    }
    for q, key in ((0.5, "locust_p50_ms"), (0.95, "locust_p95_ms"), (0.99, "locust_p99_ms")):
        figures[key] = _bucket_percentile(buckets, timed, q) if timed > 0 else None
    return figures


def _bucket_percentile(buckets: Counter[float], total: int, q: float) -> float:
    """Locust's rule (``locust.stats.calculate_response_time_percentile``), on its summed buckets."""
    allowed_above = int(total * q)
    seen = 0
    for bucket in sorted(buckets, reverse=True):
        seen += buckets[bucket]
        if total - seen <= allowed_above:
            return bucket
    return 0.0


def run_locust(
    host: str,
    profile: LoadProfile,
    out_dir: str | Path,
    *,
    cpus: Iterable[int] | None = None,
    stop_timeout_s: float = 5.0,
    startup_grace_s: float = STARTUP_GRACE_S,
    deadline_s: float | None = None,
    cpu_interval_s: float = 0.5,
    workers: int = 1,
) -> LoadResult:
    """Run ``profile`` against ``host`` with Locust in a child process; return its `LoadResult`.

    Writes ``<out_dir>/requests.csv`` (every request), Locust's ``locust_*.csv`` and
    ``locust_summary.json``, and ``locust.log``. The child is pinned to ``cpus`` and killed if it runs
    past ``deadline_s`` (default ``duration + stop_timeout + startup_grace``). ``out_dir`` is resolved
    first: Locust runs in it and gets absolute paths only. ``workers`` > 1: a Locust master and that many
    workers, each process pinned to ``cpus``, their records merged (`harness.load.locust_distributed`);
    with ``HARNESS_LOCUST_MASTER_PORT`` set, a master only, for workers elsewhere (``HARNESS_LOCUST_WORKERS`` of them).
    Raises ConfigError for bad ``cpus``, an empty ``out_dir`` or ``workers`` outside 1..`MAX_WORKERS`,
    HarnessError when Locust recorded no request (whatever its exit code).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("workers", workers, f"must be an integer in [1, {MAX_WORKERS}]")
    out = resolve_path(out_dir, "out_dir")
    out.mkdir(parents=True, exist_ok=True)
    from harness.load.locust_distributed import external_master

    external = external_master()  # the in-cluster runner: its workers are the rendered worker Deployment
    if workers > 1 or external is not None:
        from harness.load.locust_distributed import run_locust_distributed

        (out / REQUESTS_FILE).unlink(missing_ok=True)
        limit_s = profile.duration_s + stop_timeout_s + startup_grace_s if deadline_s is None else deadline_s
        return run_locust_distributed(host, profile, out, workers=max(workers, external[1]) if external else workers,
                                      cpus=cpus, stop_timeout_s=stop_timeout_s, limit_s=limit_s,
                                      cpu_interval_s=cpu_interval_s, external_port=external[0] if external else None)
    requests_path = out / REQUESTS_FILE
    requests_path.unlink(missing_ok=True)  # the locustfile appends
    log_path = out / LOCUST_LOG
    argv, env = locust_command(host, profile, out, stop_timeout_s=stop_timeout_s)
    started_s = time.time()
    proc = sampler = None
    hard_killed = False
    try:
        with interrupts_held():  # an interrupt lands only once the child is recorded here
            proc = processes.spawn(argv, cpus=cpus, env=env, log_path=log_path, cwd=out)
            sampler = CpuSampler(proc.pid, cpu_interval_s).start()
        limit_s = profile.duration_s + stop_timeout_s + startup_grace_s if deadline_s is None else deadline_s
        code = processes.wait_bounded(proc, limit_s)
        if code is None:
            hard_killed = True
            code = processes.stop(proc)
    finally:
        if sampler is not None:
            sampler.stop()
        if proc is not None and proc.poll() is None:  # interrupted or failed above: never leave Locust running
            processes.stop(proc)
    ended_s = time.time()
    records = list(read_records(requests_path, RequestRecord)) if requests_path.exists() else []
    if not records:  # a load run without records is a failed run, never an empty success
        raise no_records_error("Locust", requests_path, code, log_path)
    first = min((r.intended_s for r in records), default=None)
    last = max((r.intended_s + r.latency_ms / 1000.0 for r in records), default=None)
    paths = {
        "requests": str(requests_path),
        "locust_csv_prefix": str(out / LOCUST_PREFIX),
        "locust_summary": str(out / (LOCUST_PREFIX + "_summary.json")),
        "locust_log": str(log_path),
    }
    extra = {"profile": profile.model_dump(), "host": host, **locust_figures(out / (LOCUST_PREFIX + "_summary.json"))}
    return result_from_records(
        records, source="locust", cpu=sampler.stats(first, last), exit_code=code, hard_killed=hard_killed,
        started_s=started_s, ended_s=ended_s, paths=paths, extra=extra,
    )
