"""Rate-driven (open-loop) load: requests go out on a schedule, whatever the responses do.

Closed-loop users slow down when the service slows down, which hides queueing (coordinated
omission). Here each request has a scheduled send time (constant spacing, or Poisson arrivals from a
seed); latency runs from that scheduled time, so a stalled server shows up as latency of every request
that should have gone out during the stall. In-flight requests are capped: a request due while the
cap is reached is recorded as an error (``overflow``), never silently skipped.

The generator runs in its own process (``python -m harness.load.rate CONFIG``), asyncio + aiohttp,
pinned to the CPUs given and killed if it overruns. SIGTERM (or SIGINT) ends it early and cleanly:
no new requests, outstanding ones finish (bounded by their timeout), records are flushed and the
summary written. How late it sent requests (``lag``: actual minus
scheduled send time) says whether it kept the schedule; a generator that could not is the open-loop
equivalent of a saturated one and is reported as ``generator_saturated``.

``run_rate(..., workers=N)`` sends the same schedule from N such processes, each taking a share of it
(`harness.load.rate_workers`: ``python -m harness.load.rate CONFIG INDEX COUNT``, started together on
one clock); one worker (the default) is the single process above.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from itertools import islice
from typing import Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.config import DEFAULT_MODEL
from harness.errors import ConfigError
from harness import processes
from harness.load.cpu_sampler import CpuSampler
from harness.load.protocols import ProtocolSettings, aio, build_adapter
from harness.load.profiles import check_http_url, check_model_name
from harness.load.result import LoadResult, no_records_error, result_from_records
from harness.measure.percentiles import percentiles
from harness.paths import resolve_path
from harness.request_records import REQUESTS_FILE, RequestRecord, append_records, read_records
from harness.signals import interrupts_held
from harness.validation import validate_model

__all__ = ["RateConfig", "ScheduleLag", "RateResult", "schedule_offsets", "rate_command", "run_rate", "read_lag",
           "LAG_TOLERANCE_MS", "MAX_WORKERS"]

LAG_TOLERANCE_MS = 50.0  # p99 send lag above this: the generator did not keep its schedule
STARTUP_GRACE_S = 20.0
FLUSH_INTERVAL_S = 1.0
CONFIG_FILE = "rate_config.json"
SUMMARY_FILE = "rate_summary.json"
LOG_FILE = "rate.log"
OVERFLOW_ERROR = "overflow: max_in_flight requests already outstanding"
SOURCE = "rate"
MAX_WORKERS = 64  # processes one open-loop run may be split over
READY_LINE = b"ready"  # a share's worker says it is set up; the harness answers with the common start time


class RateConfig(BaseModel):
    """One open-loop run: where, how fast, how long, with which arrival process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    rate_rps: float = Field(gt=0, le=100_000)
    duration_s: float = Field(gt=0, le=86400)
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = Field(0, ge=0)
    model: str = DEFAULT_MODEL
    batch_size: int = Field(1, ge=1, le=4096)
    timeout_s: float = Field(5.0, gt=0, le=3600)
    max_in_flight: int = Field(256, ge=1, le=100_000)
    # further hosts to alternate with: request i goes to ([host] + alternate_hosts)[(i // alternate_every) % n] (an
    # interleaved A/B pair, one generator for both, so a burst on the machine hits both alike)
    alternate_hosts: list[str] = Field(default_factory=list, max_length=16)
    # requests in a row to one host before the next: blocks keep each host's caches warm (1 = every request)
    alternate_every: int = Field(1, ge=1, le=100_000)

    # what to send (None: oip-v2 to ``model`` with ``batch_size`` rows, as before protocols had a choice)
    protocol: ProtocolSettings | None = None

    _http = field_validator("host")(lambda value: check_http_url(value))

    @property
    def protocol_settings(self) -> ProtocolSettings:
        """The protocol requests are sent in: ``protocol``, else oip-v2 of ``model`` and ``batch_size``."""
        return self.protocol or ProtocolSettings(model=self.model, batch_size=self.batch_size)

    @field_validator("alternate_hosts")
    @classmethod
    def _http_hosts(cls, values: list[str]) -> list[str]:
        return [check_http_url(value) for value in values]

    _known_model = field_validator("model")(lambda value: check_model_name(value))


@dataclass(frozen=True)
class ScheduleLag:
    """How late the generator sent requests (actual minus scheduled send time), in milliseconds."""

    scheduled: int
    sent: int
    overflow: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    kept: bool  # p99 lag within LAG_TOLERANCE_MS


@dataclass(frozen=True)
class RateResult:
    """Records and summary of an open-loop run."""

    config: RateConfig
    load: LoadResult
    lag: ScheduleLag
    records: list[RequestRecord]
    workers: tuple = ()  # `harness.load.workers.WorkerLoad` of each process when split over several

    @property
    def cpu_saturated(self) -> bool:
        """Whether the generator ran out of CPU: as a whole, or any one of its worker processes."""
        return self.load.generator_cpu.saturated or any(w.cpu.saturated for w in self.workers)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready summary (without the records)."""
        lag = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self.lag).items()}
        data = {"config": self.config.model_dump(), "load": self.load.to_dict(), "lag": lag}
        if self.workers:
            data["workers"] = [w.to_dict() for w in self.workers]
        return data


def schedule_offsets(rate_rps: float, duration_s: float, arrival: str = "constant", seed: int = 0) -> list[float]:
    """Return the send offsets (seconds from the start, ascending, < ``duration_s``) of an open-loop run.

    ``constant``: every ``1/rate``; ``poisson``: exponential gaps of mean ``1/rate`` from ``seed``.
    Raises ValueError for a non-positive rate or duration or an unknown arrival process.
    """
    if not rate_rps > 0 or not duration_s > 0:
        raise ValueError(f"rate_rps={rate_rps!r}, duration_s={duration_s!r}: both must be greater than zero")
    if arrival == "constant":
        return [i / rate_rps for i in range(int(math.ceil(rate_rps * duration_s - 1e-9)))]
    if arrival != "poisson":
        raise ValueError(f"arrival={arrival!r}: choose constant or poisson")
    rng, offsets, t = random.Random(seed), [], 0.0
    while True:
        t += rng.expovariate(rate_rps)
        if t >= duration_s:
            return offsets
        offsets.append(t)


# ---- the generator process -------------------------------------------------------------------------


async def _generate(config: RateConfig, requests_path: Path, share: tuple[int, int] = (0, 1),
                    start_at: Callable[[], float | None] | None = None) -> dict[str, object]:
    """Send the schedule (or, with ``share`` = (i, n), its arrivals i, i + n, i + 2n, ...); return the summary.

    ``start_at``: blocks until the harness gives the common start (epoch seconds; None: stop unstarted).
    """
    import aiohttp

    hosts = [config.host, *config.alternate_hosts]
    alternating = len(hosts) > 1
    adapter = build_adapter(config.protocol_settings)
    offsets = schedule_offsets(config.rate_rps, config.duration_s, config.arrival, config.seed)
    buffer: list[RequestRecord] = []
    lags_ms: list[float] = []
    in_flight: set[asyncio.Task] = set()
    overflow = 0
    # epoch times for the records, monotonic for every interval (wall clocks can step)
    epoch_minus_mono = time.time() - time.monotonic()

    async def send(session: aiohttp.ClientSession, intended: float, n: int, index: int) -> None:
        sent = time.monotonic()
        reading, latency_ms = await aio.send(session, adapter, hosts[index], n, config.timeout_s, intended)
        buffer.append(RequestRecord(intended + epoch_minus_mono, sent + epoch_minus_mono, latency_ms,
                                    source=SOURCE, target=hosts[index] if alternating else "", **reading.record_fields()))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            _flush(buffer, requests_path)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop early on request: finish, flush, summarise
        loop.add_signal_handler(sig, stopping.set)
    flush_task = loop.create_task(flusher())
    scheduled = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=config.max_in_flight)) as session:
        start = time.monotonic() + 0.05  # a moment to get the first sleep in before the first send
        if start_at is not None:  # one of several workers: all start on the harness's word, on one clock
            start_epoch = start_at()
            if start_epoch is None:
                stopping.set()
            start = (start_epoch or 0.0) - epoch_minus_mono
        index, count = share
        # a share keeps the arrivals' own numbers: request i is the adapter's i-th and goes to the i-th host
        arrivals = enumerate(offsets) if count == 1 else islice(enumerate(offsets), index, None, count)
        for i, offset in arrivals:
            intended = start + offset
            delay = intended - time.monotonic()
            if delay > 0:
                try:  # sleep until the slot, waking early on a stop request
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
            if stopping.is_set():
                break
            scheduled += 1
            lags_ms.append((time.monotonic() - intended) * 1000.0)
            if len(in_flight) >= config.max_in_flight:
                overflow += 1
                buffer.append(RequestRecord(intended + epoch_minus_mono, math.nan, math.nan, 0, False, OVERFLOW_ERROR, SOURCE,
                                            hosts[(i // config.alternate_every) % len(hosts)] if alternating else ""))
                continue
            task = loop.create_task(send(session, intended, i, (i // config.alternate_every) % len(hosts)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:  # every request has its own timeout; this wait is bounded by it
            await asyncio.wait(set(in_flight), timeout=config.timeout_s + 1.0)
    flush_task.cancel()
    _flush(buffer, requests_path)
    p50, p99 = (percentiles(lags_ms, (50, 99))[q] for q in (50.0, 99.0))
    return {"scheduled": scheduled, "sent": scheduled - overflow, "overflow": overflow, "stopped_early": stopping.is_set(),
            "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": max(lags_ms, default=math.nan)}


def _flush(buffer: list[RequestRecord], path: Path) -> None:
    batch = buffer[:]
    del buffer[: len(batch)]
    if batch:
        append_records(path, batch, RequestRecord)


def _worker_main(config_path: str, share: tuple[int, int] | None = None) -> int:
    out = Path(config_path).parent
    config = RateConfig.model_validate_json(Path(config_path).read_text(encoding="utf-8"))
    if share is None:
        summary = aio.run_event_loop(lambda: _generate(config, out / REQUESTS_FILE))
    else:
        summary = aio.run_event_loop(lambda: _generate(config, out / REQUESTS_FILE, share, _start_from_stdin))
    (out / SUMMARY_FILE).write_text(json.dumps(summary), encoding="utf-8")
    return 0


def _start_from_stdin() -> float | None:
    """Say ready on stdout; return the start time the harness writes to stdin (None: it closed it, stop)."""
    sys.stdout.buffer.write(READY_LINE + b"\n")
    sys.stdout.flush()
    line = sys.stdin.readline().strip()
    return float(line) if line else None


# ---- the harness side ------------------------------------------------------------------------------


def rate_command(config: RateConfig, out_dir: Path) -> list[str]:
    """Write ``config`` to ``<out_dir>/rate_config.json``; return the argv of the rate worker that runs it.

    The one builder of a rate-generator run: `run_rate` and the chaos run's background load
    (`harness.chaos.loadgen`) start what it returns. ``out_dir`` must be absolute (the child gets its paths).
    """
    config_path = out_dir / CONFIG_FILE
    config_path.write_text(config.model_dump_json(), encoding="utf-8")
    return processes.python_argv("harness.load.rate", str(config_path))


def run_rate(
    host: str,
    out_dir: str | Path,
    *,
    rate_rps: float,
    duration_s: float,
    arrival: str = "constant",
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    batch_size: int = 1,
    timeout_s: float = 5.0,
    max_in_flight: int = 256,
    cpus: Iterable[int] | None = None,
    startup_grace_s: float = STARTUP_GRACE_S,
    alternate_hosts: Iterable[str] = (),
    alternate_every: int = 1,
    protocol: ProtocolSettings | None = None,
    workers: int = 1,
) -> RateResult:
    """Send requests to ``host`` at ``rate_rps`` for ``duration_s`` from a pinned child; return a `RateResult`.

    Writes ``<out_dir>/requests.csv`` (source ``rate``), ``rate_summary.json`` and ``rate.log``; the
    generator is handed absolute paths only. With ``alternate_hosts`` the requests cycle through
    ``host`` and those, ``alternate_every`` in a row to each (each record's ``target`` says where it went).
    ``protocol`` says what to send (default: oip-v2 to ``model``). ``workers`` > 1 splits the schedule over
    that many processes, each pinned to ``cpus`` (`harness.load.rate_workers.run_rate_workers`: per-worker
    records and summaries under ``<out_dir>/workers/``, merged into ``requests.csv``). Raises ConfigError
    for bad settings (an empty ``out_dir``, a bad template or bodies file, ``workers`` outside 1..`MAX_WORKERS`
    included), HarnessError when the generator recorded no request.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("workers", workers, f"must be an integer in [1, {MAX_WORKERS}]")
    config = validate_model(RateConfig, {
        "host": host, "rate_rps": rate_rps, "duration_s": duration_s, "arrival": arrival, "seed": seed,
        "model": model, "batch_size": batch_size, "timeout_s": timeout_s, "max_in_flight": max_in_flight,
        "alternate_hosts": list(alternate_hosts), "alternate_every": alternate_every, "protocol": protocol,
    }, source="rate load")
    if config.protocol is not None:
        build_adapter(config.protocol)  # a bad template or bodies file fails here, as one line
    out = resolve_path(out_dir, "out_dir")
    out.mkdir(parents=True, exist_ok=True)
    requests_path, summary_path, log_path = out / REQUESTS_FILE, out / SUMMARY_FILE, out / LOG_FILE
    for stale in (requests_path, summary_path):
        stale.unlink(missing_ok=True)
    if workers > 1:
        from harness.load.rate_workers import run_rate_workers

        return run_rate_workers(config, out, workers=workers, cpus=cpus, startup_grace_s=startup_grace_s)
    argv = rate_command(config, out)
    started_s = time.time()
    proc = sampler = None
    hard_killed = False
    try:
        with interrupts_held():  # an interrupt lands only once the child is recorded here
            proc = processes.spawn(argv, cpus=cpus, log_path=log_path)
            sampler = CpuSampler(proc.pid).start()
        code = processes.wait_bounded(proc, duration_s + timeout_s + startup_grace_s)
        if code is None:
            hard_killed = True
            code = processes.stop(proc)
    finally:
        if sampler is not None:
            sampler.stop()
        if proc is not None and proc.poll() is None:
            processes.stop(proc)
    records = list(read_records(requests_path, RequestRecord)) if requests_path.exists() else []
    if not records:
        raise no_records_error("the rate generator", requests_path, code, log_path)
    lag = read_lag(summary_path, len(records))
    first = min(r.intended_s for r in records)
    cpu = sampler.stats(first, first + duration_s)
    load = result_from_records(
        records, source="rate", cpu=cpu, exit_code=code, hard_killed=hard_killed, started_s=started_s,
        ended_s=time.time(), paths={"requests": str(requests_path), "summary": str(summary_path), "log": str(log_path)},
        extra={"rate_rps": rate_rps, "arrival": arrival, "schedule_kept": lag.kept},
    )
    if not lag.kept:  # the open-loop form of a saturated generator
        load = replace(load, generator_saturated=True)
    return RateResult(config=config, load=load, lag=lag, records=records)


def read_lag(summary_path: Path, recorded: int) -> ScheduleLag:
    """Return the schedule lag a generator's summary reports (not kept, when it wrote none: it was killed)."""
    try:
        data = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # killed before it finished: what was recorded is all there is
        return ScheduleLag(recorded, recorded, 0, math.nan, math.nan, math.nan, False)
    p99 = float(data["lag_p99_ms"]) if data["lag_p99_ms"] is not None else math.nan
    return ScheduleLag(
        scheduled=int(data["scheduled"]), sent=int(data["sent"]), overflow=int(data["overflow"]),
        p50_ms=float(data["lag_p50_ms"]), p99_ms=p99, max_ms=float(data["lag_max_ms"]),
        kept=math.isfinite(p99) and p99 <= LAG_TOLERANCE_MS,
    )


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        sys.stderr.write("usage: python -m harness.load.rate CONFIG_JSON [SHARE_INDEX SHARE_COUNT]\n")
        sys.exit(2)
    sys.exit(_worker_main(sys.argv[1], (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) == 4 else None))
