"""The client-side prober: one inference request through the deployment's entry point every 50 ms.

It gives the timeline that recovery is measured from: when clients first saw failures and when they
saw sustained success again, at sub-second resolution. Probes fire on a fixed schedule (slot ``k`` at
``start + k * interval_s``) whether or not earlier probes have answered, so one slow request does not
stop the clock; each probe has its own timeout. A slot the prober itself was too late for by more than
a whole interval (its process was starved) is skipped and counted as ``missed``, not sent in a burst.

The prober runs in its own process (``python -m harness.load.prober CONFIG``) so the harness's GIL
adds no jitter, optionally pinned to CPUs. Samples (`harness.request_records.ProbeSample`, ``t_s`` = actual
send time) are appended to the timeline CSV about every ``FLUSH_INTERVAL_S`` in completion order;
sort by ``t_s`` to read them in send order. It measures its own send jitter (actual minus scheduled
send time) and reports p50/p99/max on `Prober.stop`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.config import DEFAULT_MODEL
from harness.errors import HarnessError
from harness import processes
from harness.load.protocols import ProtocolSettings, aio, build_adapter
from harness.load.profiles import check_http_url, check_model_name
from harness.measure.percentiles import percentiles
from harness.paths import resolve_path
from harness.request_records import ProbeSample, append_records
from harness.signals import interrupts_held
from harness.validation import validate_model

__all__ = ["ProberConfig", "ProberSummary", "Prober"]

DEFAULT_INTERVAL_S = 0.05
FLUSH_INTERVAL_S = 0.25
START_TIMEOUT_S = 30.0  # the child's imports take a while on a busy machine
STOP_GRACE_S = 5.0  # past the probe timeout, before the child is killed
OVERFLOW_ERROR = "overflow: too many probes outstanding"


class ProberConfig(BaseModel):
    """Where and how often to probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    timeline_path: str
    model: str = DEFAULT_MODEL
    interval_s: float = Field(DEFAULT_INTERVAL_S, gt=0.001, le=60)
    timeout_s: float = Field(1.0, gt=0, le=600)
    max_duration_s: float = Field(6 * 3600, gt=0)  # the child stops itself after this, whatever happens
    max_in_flight: int | None = Field(None, ge=1, le=100_000)
    protocol: ProtocolSettings | None = None  # what a probe sends (None: oip-v2 to ``model``)

    _http = field_validator("host")(lambda value: check_http_url(value))

    _known_model = field_validator("model")(lambda value: check_model_name(value))

    @property
    def in_flight_cap(self) -> int:
        """Outstanding probes allowed: enough for every probe of one timeout period, plus slack."""
        return self.max_in_flight or math.ceil(self.timeout_s / self.interval_s) + 2


@dataclass(frozen=True)
class ProberSummary:
    """What the prober sent and how well it kept its own clock (jitter in milliseconds)."""

    samples: int
    ok: int
    failed: int
    missed: int  # slots skipped because the prober itself ran more than one interval late
    interval_s: float
    jitter_p50_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float
    started_s: float
    stopped_s: float
    timeline_path: str

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


# ---- the prober process ----------------------------------------------------------------------------


async def _probe(config: ProberConfig) -> dict[str, object]:
    import aiohttp

    path = Path(config.timeline_path)
    adapter = build_adapter(config.protocol or ProtocolSettings(model=config.model))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    buffer: list[ProbeSample] = []
    jitter_ms: list[float] = []
    in_flight: set[asyncio.Task] = set()
    counts = {"ok": 0, "failed": 0, "missed": 0}
    epoch_minus_mono = time.time() - time.monotonic()

    numbers = itertools.count()  # sample n sends the adapter's n-th request: the load's sequence

    async def send(session: aiohttp.ClientSession) -> None:
        sent = time.monotonic()
        reading, latency_ms = await aio.send(session, adapter, config.host, next(numbers), config.timeout_s, sent)
        counts["ok" if reading.ok else "failed"] += 1
        buffer.append(ProbeSample(sent + epoch_minus_mono, reading.ok, latency_ms, reading.status, reading.error))

    def flush() -> None:
        batch = sorted(buffer[:], key=lambda s: s.t_s)
        del buffer[: len(batch)]
        append_records(path, batch, ProbeSample)  # also creates the file with its header: the ready signal

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            flush()

    flush()
    flush_task = loop.create_task(flusher())
    start = time.monotonic() + config.interval_s
    deadline = start + config.max_duration_s
    slot = 0
    connector = aiohttp.TCPConnector(limit=config.in_flight_cap)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stopping.is_set():
            scheduled = start + slot * config.interval_s
            if scheduled >= deadline:
                break
            delay = scheduled - time.monotonic()
            if delay > 0:
                try:  # wake early on stop, otherwise exactly at the slot
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                    break
                except asyncio.TimeoutError:
                    pass
            now = time.monotonic()
            late_slots = int((now - scheduled) // config.interval_s)
            if late_slots >= 1:  # starved for more than an interval: skip to the current slot, count the gap
                counts["missed"] += late_slots
                slot += late_slots
                scheduled = start + slot * config.interval_s
            jitter_ms.append((now - scheduled) * 1000.0)
            slot += 1
            if len(in_flight) >= config.in_flight_cap:
                counts["failed"] += 1
                buffer.append(ProbeSample(now + epoch_minus_mono, False, math.nan, 0, OVERFLOW_ERROR))
                continue
            task = loop.create_task(send(session))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=config.timeout_s + 0.5)
    flush_task.cancel()
    flush()
    q = percentiles(jitter_ms, (50, 99))
    return {"ok": counts["ok"], "failed": counts["failed"], "missed": counts["missed"],
            "jitter_p50_ms": q[50.0], "jitter_p99_ms": q[99.0], "jitter_max_ms": max(jitter_ms, default=math.nan)}


def _worker_main(config_path: str) -> int:
    config = ProberConfig.model_validate_json(Path(config_path).read_text(encoding="utf-8"))
    summary = aio.run_event_loop(lambda: _probe(config))
    Path(config_path).with_suffix(".summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return 0


# ---- the harness side ------------------------------------------------------------------------------


class Prober:
    """Start and stop the prober process; a context manager.

    ``Prober(host, timeline_path)`` probes ``host`` every ``interval_s`` with a ``timeout_s`` per probe
    (the first request of ``protocol``, default oip-v2 to ``model``; success as the protocol reads it), appending `ProbeSample` rows to ``timeline_path``. `start` returns once the prober is running;
    `stop` returns its `ProberSummary`. Raises ConfigError for bad settings, HarnessError when the
    prober does not start.
    """

    def __init__(
        self,
        host: str,
        timeline_path: str | Path,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = 1.0,
        model: str = DEFAULT_MODEL,
        cpus: Iterable[int] | None = None,
        max_duration_s: float = 6 * 3600,
        protocol: ProtocolSettings | None = None,
    ) -> None:
        timeline = resolve_path(timeline_path, "timeline_path")  # the prober child is handed it
        self.config = validate_model(ProberConfig, {
            "host": host, "timeline_path": str(timeline), "model": model, "interval_s": interval_s,
            "timeout_s": timeout_s, "max_duration_s": max_duration_s, "protocol": protocol,
        }, source="prober")
        if protocol is not None:
            build_adapter(self.config.protocol)  # a bad template or bodies file fails here, as one line
        self.cpus = processes.validate_cpus(cpus)
        self.timeline_path = timeline
        self._config_path = timeline.with_name(timeline.stem + ".prober.json")
        self._proc = None
        self._started_s = math.nan
        self.summary: ProberSummary | None = None

    def start(self) -> "Prober":
        """Start probing; return self once the first timeline row can be written. Raises HarnessError."""
        if self._proc is not None:
            return self
        self.timeline_path.parent.mkdir(parents=True, exist_ok=True)
        self.timeline_path.unlink(missing_ok=True)
        self._config_path.with_suffix(".summary.json").unlink(missing_ok=True)
        self._config_path.write_text(self.config.model_dump_json(), encoding="utf-8")
        log_path = self.timeline_path.with_name(self.timeline_path.stem + ".prober.log")
        self._started_s = time.time()
        with interrupts_held():  # an interrupt must find the child recorded, for `stop` to end it
            self._proc = processes.spawn(processes.python_argv("harness.load.prober", str(self._config_path)),
                                             cpus=self.cpus, log_path=log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.timeline_path.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                processes.stop(self._proc)
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:] if log_path.exists() else ""
                raise HarnessError(f"the prober did not start (exit code {self._proc.returncode}); its log ends:\n{tail}")
            time.sleep(0.02)
        return self

    @property
    def running(self) -> bool:
        """True while the prober process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> ProberSummary:
        """Stop probing (waiting for outstanding probes up to their timeout); return the summary."""
        if self.summary is not None:
            return self.summary
        if self._proc is None:
            raise HarnessError("the prober was never started")
        processes.stop(self._proc, grace_s=self.config.timeout_s + STOP_GRACE_S)
        stopped_s = time.time()
        try:
            data = json.loads(self._config_path.with_suffix(".summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # killed before writing it: the timeline is still valid
            data = {"ok": 0, "failed": 0, "missed": 0}
        nan = math.nan
        self.summary = ProberSummary(
            samples=int(data["ok"]) + int(data["failed"]), ok=int(data["ok"]), failed=int(data["failed"]),
            missed=int(data["missed"]), interval_s=self.config.interval_s,
            jitter_p50_ms=_float(data.get("jitter_p50_ms", nan)), jitter_p99_ms=_float(data.get("jitter_p99_ms", nan)),
            jitter_max_ms=_float(data.get("jitter_max_ms", nan)), started_s=self._started_s, stopped_s=stopped_s,
            timeline_path=str(self.timeline_path),
        )
        return self.summary

    def __enter__(self) -> "Prober":
        return self.start()

    def __exit__(self, *_exc) -> None:
        if self._proc is not None:
            self.stop()


def _float(value: object) -> float:
    return math.nan if value is None else float(value)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m harness.load.prober CONFIG_JSON\n")
        sys.exit(2)
    sys.exit(_worker_main(sys.argv[1]))
