"""One measured load run against a deployment: Locust, the prober and telemetry together, files on disk.

`run_session` is what `harness load` and the scenarios call once a deployment is Ready. It starts
replica telemetry (1 Hz) and the client-side prober (the load's protocol; one output token of a
generative one), runs the Locust profile or, for a `RateLoad`,
the open-loop rate generator (blocking, bounded),
stops the observers whatever happened, and writes ``result.json`` next to the per-request data,
timeline and telemetry. A progress callback that takes beats (`harness.load.heartbeat.LoadProgress`)
gets the load so far every few seconds while it runs. Where the service and the generator run is
`harness.cpus.plan_cpus`'s to decide; ``load_workers`` > 1 runs the generator from that many processes
(Locust's master and workers, `harness.load.locust_distributed`; the rate generator's shares,
`harness.load.rate_workers`), their records merged into one requests.csv, saturation judged per worker
and overall (``result.generator``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from harness import __version__
from harness.config import DEFAULT_MODEL
from harness.load.heartbeat import heartbeat_for
from harness.load.locust_runner import run_locust
from harness.load.prober import Prober, ProberSummary
from harness.load.profiles import LoadProfile
from harness.load.protocols import ProtocolSettings
from harness.load.rate import run_rate
from harness.load.result import LoadResult
from harness.load.workers import worker_dir
from harness.paths import resolve_path
from harness.request_records import REQUESTS_FILE, TIMELINE_FILE

__all__ = ["RESULT_FILE", "RateLoad", "Endpoint", "run_session", "machine_info"]

RESULT_FILE = "result.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLoad:
    """Open-loop load for `run_session`: constant spacing at ``rate_rps`` for ``duration_s``, each request
    carrying ``request_rows`` samples; latency runs from the intended send time (`harness.load.rate`)."""

    rate_rps: float
    duration_s: float
    model: str = DEFAULT_MODEL
    request_rows: int = 1
    kind: str = "rate"
    protocol: ProtocolSettings | None = None  # what to send (`harness.load.protocols`); None: oip-v2 to ``model``

    def model_dump(self) -> dict[str, Any]:
        """Return the load's description for result.json (as `LoadProfile.model_dump` does)."""
        return {"kind": self.kind, "rate_rps": self.rate_rps, "duration_s": self.duration_s, "model": self.model,
                "request_rows": self.request_rows, "arrival": "constant",
                "protocol": self.protocol.model_dump() if self.protocol is not None else None}


@dataclass(frozen=True)
class Endpoint:
    """A server measured as it is (``harness load --endpoint URL``): what `run_session` needs of a deployment
    (its entry point), with no replicas, telemetry or events of the harness's."""

    endpoint: str

    def replicas(self) -> list[Any]:
        return []


def machine_info() -> dict[str, Any]:
    """Return the CPU model and core counts of this machine (from harness.environment)."""
    from harness.environment import cpu_info

    info = dict(cpu_info())
    info["cpu_count"] = os.cpu_count()
    return info


def _start_telemetry(out: Path, deployment: Any) -> Any:
    """Start replica telemetry if the sampler is available; an observer never breaks the run."""
    try:
        from harness.measure.telemetry import TELEMETRY_FILE, TelemetrySampler
    except ImportError:  # pragma: no cover - telemetry is part of the package; kept defensive for old trees
        return None

    def pids() -> dict[str, int | None]:
        return {r.name: r.pid for r in deployment.replicas()}

    try:
        return TelemetrySampler(out / TELEMETRY_FILE, pids).start()
    except Exception as exc:  # noqa: BLE001 - observers must not break the run they observe
        log.warning("telemetry not started: %s", exc)
        return None


def run_session(
    deployment: Any,
    profile: LoadProfile | RateLoad,
    out_dir: str | Path,
    *,
    generator_cpus: Iterable[int] | None = None,
    prober: bool = True,
    prober_interval_s: float = 0.05,
    prober_timeout_s: float = 1.0,
    telemetry: bool = True,
    stop_timeout_s: float = 5.0,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    load_workers: int = 1,
) -> dict[str, Any]:
    """Run ``profile`` against a Ready ``deployment``; write and return the ``result.json`` content.

    Files in ``out_dir``: requests.csv, timeline.csv (with ``prober``), telemetry.csv (with
    ``telemetry``), locust_*.csv, locust_summary.json, result.json; ``out_dir`` is resolved first.
    ``load_workers``: the generator's processes (1: one process, as always). Raises ConfigError for bad
    CPUs, an empty ``out_dir`` or a bad ``load_workers``, HarnessError when the load generator or prober
    cannot run or the generator recorded no request.
    """
    say = progress or (lambda _msg: None)
    profile = _with_metadata(profile, deployment.endpoint)
    out = resolve_path(out_dir, "out_dir")
    out.mkdir(parents=True, exist_ok=True)
    cpus = tuple(generator_cpus) if generator_cpus is not None else None
    sampler = _start_telemetry(out, deployment) if telemetry else None
    probe: Prober | None = None
    summary: ProberSummary | None = None
    started_s = time.time()
    try:
        if prober:
            probe = Prober(deployment.endpoint, out / TIMELINE_FILE, interval_s=prober_interval_s,
                           timeout_s=prober_timeout_s, model=profile.model, cpus=cpus,
                           protocol=_probe_protocol(profile.protocol)).start()
            say(f"prober running every {prober_interval_s * 1000:g} ms")
        speaking = f", {profile.protocol.protocol}" if profile.protocol is not None else ""
        speaking += f", from {load_workers} generator processes" if load_workers > 1 else ""
        if isinstance(profile, RateLoad):
            say(f"running open-loop load at {profile.rate_rps:g} req/s ({profile.request_rows} sample(s) each{speaking}) "
                f"for {profile.duration_s:g} s")
        else:
            say(f"running {profile.kind} load for {profile.duration_s:g} s (peak {profile.peak_users} users{speaking})")
        # several generator processes write their own records (merged at the end): the heartbeat reads each
        beating = [worker_dir(out, i) / REQUESTS_FILE for i in range(load_workers)] if load_workers > 1 else out / REQUESTS_FILE
        with heartbeat_for(beating, profile.duration_s, progress):
            if isinstance(profile, RateLoad):
                result = run_rate(deployment.endpoint, out, rate_rps=profile.rate_rps, duration_s=profile.duration_s,
                                  model=profile.model, batch_size=profile.request_rows, cpus=cpus,
                                  protocol=profile.protocol, workers=load_workers).load
            else:
                result = run_locust(deployment.endpoint, profile, out, cpus=cpus, stop_timeout_s=stop_timeout_s,
                                    workers=load_workers)
    finally:
        if probe is not None:
            summary = probe.stop()
        if sampler is not None:
            try:
                sampler.stop()
            except Exception as exc:  # noqa: BLE001 - observers must not break the run they observe
                log.warning("telemetry did not stop cleanly: %s", exc)
    data = build_result(result, profile, prober_summary=summary, started_s=started_s, metadata=metadata)
    (out / RESULT_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return data


def _probe_protocol(protocol: ProtocolSettings | None) -> ProtocolSettings | None:
    """Return what the prober sends: the load's protocol, asking a generative server for one token (the prober
    watches availability and answer time, and a long answer would outlast its timeout): the load's prompts, a
    dataset's lengths ignored."""
    if protocol is None or not protocol.protocol.startswith("openai"):
        return protocol
    return protocol.model_copy(update={"max_tokens": 1, "dataset_lengths": False})


def _with_metadata(profile: LoadProfile | RateLoad, endpoint: str) -> LoadProfile | RateLoad:
    """Return ``profile`` whose oip-v2 protocol has its model's input tensors, read from the server once when
    it is not a reference model (`harness.load.protocols.oip_v2.with_metadata`); raise HarnessError."""
    from dataclasses import replace

    from harness.load.protocols.oip_v2 import with_metadata

    protocol = with_metadata(profile.protocol, endpoint)
    if protocol is profile.protocol:
        return profile
    return replace(profile, protocol=protocol) if isinstance(profile, RateLoad) else profile.model_copy(update={"protocol": protocol})


def build_result(
    result: LoadResult, profile: LoadProfile | RateLoad, *, prober_summary: ProberSummary | None = None,
    started_s: float | None = None, metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the ``result.json`` content of a load run (JSON-ready; NaN written as null)."""
    rate = isinstance(profile, RateLoad)
    data: dict[str, Any] = {
        "kind": "load",
        # open loop: the throughput is the offered rate unless requests fail, so compare does not judge it
        "load_mode": "rate" if rate else "locust",
        "offered_rate_rps": profile.rate_rps if rate else None,
        "harness_version": __version__,
        "started_s": started_s if started_s is not None else result.started_s,
        "ended_s": result.ended_s,
        "duration_s": result.duration_s,
        "profile": profile.model_dump(),
        "requests": result.requests,
        "ok": result.ok,
        "errors": result.errors,
        "errors_by_status": result.errors_by_status,
        "throughput_rps": result.throughput_rps,
        "request_rate_rps": result.request_rate_rps,
        "mean_ms": result.mean_ms,
        "p50_ms": result.p50_ms,
        "p95_ms": result.p95_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "percentiles": "exact, from requests.csv (harness.measure.percentiles)",
        "generator_saturated": result.generator_saturated,
        "generator_cpu": result.generator_cpu.to_dict(),
        "rate": {"exit_code": result.exit_code, "hard_killed": result.hard_killed, **result.extra} if rate else None,
        "locust": None if rate else {"exit_code": result.exit_code, "hard_killed": result.hard_killed,
                   "requests": result.extra.get("locust_requests"), "failures": result.extra.get("locust_failures"),
                   # Locust's own bucketed percentiles, for comparison with the exact ones above
                   "p50_ms": result.extra.get("locust_p50_ms"), "p95_ms": result.extra.get("locust_p95_ms"),
                   "p99_ms": result.extra.get("locust_p99_ms")},
        "prober": prober_summary.to_dict() if prober_summary is not None else None,
        "machine": machine_info(),
        "files": {k: Path(v).name for k, v in result.paths.items()},
    }
    if "worker_loads" in result.extra:  # several generator processes: each judged, and the whole
        data["generator"] = {key: result.extra.get(key) for key in (
            "workers", "generator_cores", "generator_cpus", "saturated_why", "worker_loads", "master_cpu")
            if key in result.extra}
        for section in ("rate", "locust"):
            if isinstance(data[section], dict):
                data[section] = {k: v for k, v in data[section].items() if k not in data["generator"]}
    elif result.generator_saturated:  # one process: why, in the same words
        from harness.load.rate import LAG_TOLERANCE_MS
        from harness.load.workers import cpu_finding

        lagged = f"the schedule not kept (p99 send lag over {LAG_TOLERANCE_MS:g} ms)" if result.extra.get("schedule_kept") is False else ""
        data["generator"] = {"workers": 1, "saturated_why": "; ".join(filter(None, [cpu_finding(result.generator_cpu), lagged]))}
    data.update(metadata or {})
    return _json_ready(data)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
