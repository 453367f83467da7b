"""Load runs made of rounds: independent measurements, each on a fresh deployment.

A **round** deploys the service spec, waits until it is Ready, injects the arm's fault (if any) into
every replica, warms up, measures (`harness.load.session.run_session`: Locust users or an open-loop
`RateLoad`) and tears down. Rounds of one run are independent repeats of the whole measurement, so
their spread is the run-to-run noise `harness compare` needs; windows inside one run are not.

Layout of a run of N > 1 rounds (`run_rounds`): ``round-01/``, ``round-02/``... each a normal load
part (result.json, requests.csv, events.jsonl, ...), and a top-level ``result.json`` whose headline
figures are the medians over rounds, with a ``rounds`` list of each round's figures. A run of one
round is written flat, as `harness load` always wrote it.

Interleaved A/B (two builds in alternating rounds, ABBA) is `harness.load.interleave`, built on
the rounds here.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.cpus import CpuPlan
from harness.errors import ConfigError
from harness.load.profiles import LoadProfile
from harness.load.session import RESULT_FILE, RateLoad, run_session
from harness.paths import resolve_path

__all__ = [
    "ROUND_DIR",
    "Arm",
    "round_dir_name",
    "summarize_rounds",
    "write_result",
    "inject_arm_fault",
    "warm_up",
    "close_deployment",
    "Teardown",
    "measure_round",
    "run_rounds",
    "parse_fault_params",
]

ROUND_DIR = "round-{:02d}"
READY_TIMEOUT_S = 180.0
LOCUST_WARMUP_RATE_RPS = 10.0  # open-loop warm-up before a Locust round: wakes the service, not measured
FAULT_MARGIN_S = 120.0  # the injected fault outlives the round by this much (it is torn down with it)
ROUND_FIGURES = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps", "requests", "errors", "started_s",
                 "generator_saturated")
HEADLINE_FIGURES = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "throughput_rps", "request_rate_rps")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Arm:
    """One build under test: its service spec and, optionally, a fault injected into every replica."""

    name: str
    spec: Any  # harness.config.ServiceSpec
    fault: str | None = None
    fault_params: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, field_name: str = "--fault-param") -> None:
        """Raise ConfigError naming ``field_name`` when the fault's parameters would be refused."""
        from harness.faultparams import FaultError, validate_fault

        if self.fault_params and not self.fault:
            raise ConfigError(field_name, dict(self.fault_params), "needs a fault kind to inject")
        if self.fault:
            try:
                validate_fault(self.fault, dict(self.fault_params))
            except FaultError as exc:
                raise ConfigError(field_name, dict(self.fault_params), str(exc)) from None


def round_dir_name(index: int) -> str:
    """Return the directory name of round ``index`` (1-based): ``round-01``."""
    return ROUND_DIR.format(index)


def summarize_rounds(results: Sequence[Mapping[str, Any]], *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the top-level ``result.json`` of a run with rounds: each round's figures under ``rounds``
    (with its directory, and its ``pair``/``position`` when interleaved) and, as headline, the median
    over rounds of each figure (requests and errors summed)."""
    rows: list[dict[str, Any]] = []
    for index, result in enumerate(results, start=1):
        info = result.get("round") or {}
        row = {"round": info.get("index", index), "dir": round_dir_name(info.get("index", index))}
        row.update({k: result.get(k) for k in ROUND_FIGURES})
        row.update({k: info[k] for k in ("pair", "position") if k in info})
        rows.append(row)

    def median(key: str) -> float | None:
        values = [float(r[key]) for r in results if isinstance(r.get(key), (int, float))]
        return statistics.median(values) if values else None

    first = results[0] if results else {}
    data: dict[str, Any] = {
        "kind": "load",
        "load_mode": first.get("load_mode"),
        "offered_rate_rps": first.get("offered_rate_rps"),
        "profile": first.get("profile"),
        "round_count": len(rows),
        "rounds": rows,
        "headline": "median over rounds of each round's exact figures; requests and errors summed",
        **{k: median(k) for k in HEADLINE_FIGURES},
        "requests": sum(int(r.get("requests") or 0) for r in results),
        "ok": sum(int(r.get("ok") or 0) for r in results),
        "errors": sum(int(r.get("errors") or 0) for r in results),
        "generator_saturated": any(bool(r.get("generator_saturated")) for r in results),
        "started_s": first.get("started_s"),
        "ended_s": results[-1].get("ended_s") if results else None,
        "machine": first.get("machine"),
    }
    for key in ("topology", "replicas", "platform", "model", "cpu_plan", "injected_fault"):
        if key in first:
            data[key] = first[key]
    data.update(extra or {})
    return data


def write_result(path: Path, data: Mapping[str, Any]) -> None:
    """Write a run's (or round's) ``result.json`` content to ``path``."""
    import json

    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def inject_arm_fault(deployment: Any, arm: Arm, lasts_s: float, say: Progress) -> dict[str, Any]:
    """Inject ``arm``'s fault into every replica for ``lasts_s``; return what was injected (kind, params)."""
    from harness.service.client import inject_fault

    params = {"duration_s": lasts_s, **dict(arm.fault_params)}
    for replica in deployment.replicas():
        inject_fault(replica.url, str(arm.fault), deployment.fault_token, params)
    say(f"injected {arm.fault} {params} into every replica")
    return {"kind": arm.fault, "params": params}


def warm_up(deployment: Any, load: LoadProfile | RateLoad, warmup_s: float) -> int:
    """Send requests for ``warmup_s`` (spaced at the round's rate, or a modest one before Locust) from
    this process and discard the answers: the first requests of a fresh process pay for page faults and
    lazy initialisation. The requests are the load's protocol's (`harness.load.protocols`). Return how
    many were sent; a failed one is left for the measurement to see."""
    import urllib.request

    from harness.load.protocols import ProtocolSettings, build_adapter
    from harness.load.protocols.oip_v2 import with_metadata

    rate, rows = (load.rate_rps, load.request_rows) if isinstance(load, RateLoad) else (LOCUST_WARMUP_RATE_RPS, 1)
    adapter = build_adapter(with_metadata(load.protocol, deployment.endpoint)
                            or ProtocolSettings(model=load.model, batch_size=rows))
    began, sent = time.monotonic(), 0
    while time.monotonic() - began < warmup_s:
        request = adapter.request(sent)
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    deployment.endpoint.rstrip("/") + request.path, data=request.body or None, headers=request.headers,
                    method=request.method), timeout=max(1.0, warmup_s)) as response:
                response.read()
        except Exception:  # noqa: BLE001 - warm-up only: the measured load reports errors
            pass
        sent += 1
        time.sleep(max(0.0, began + sent / rate - time.monotonic()))
    return sent


def close_deployment(deployment: Any, out: Path) -> None:
    """Tear ``deployment`` down, then keep its events in ``out``."""
    from harness.platforms.base import copy_events

    deployment.close()
    copy_events(deployment, out)  # after teardown: the copy ends with the Deleted events


class Teardown:
    """Tears rounds' deployments down, in the foreground or on one background thread so that the next
    round deploys meanwhile (a teardown is mostly waiting for processes to exit). `settle` waits for the
    teardowns under way: a round calls it once Ready, so no teardown overlaps a measurement. `close`
    waits for all of them (call it on every way out)."""

    def __init__(self, background: bool = False, progress: Progress | None = None) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="round-teardown") if background else None
        self._pending: list[Future] = []
        self._say = progress or (lambda _message: None)

    def __call__(self, deployment: Any, out: Path) -> None:
        self._say("tearing down")
        if self._pool is None:
            close_deployment(deployment, out)
        else:
            self._pending.append(self._pool.submit(close_deployment, deployment, out))

    def settle(self) -> None:
        """Wait for the teardowns under way; raise the first one's error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Wait for every teardown; an error is reported through progress, not raised (one may be in flight)."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        for future in self._pending:
            if future.exception() is not None:
                self._say(f"warning: a teardown failed: {future.exception()}")
        self._pending = []


def measure_round(
    arm: Arm, load: LoadProfile | RateLoad, out: Path, *, platform: str, cpus: CpuPlan, warmup_s: float,
    prober: bool, prober_interval_s: float, metadata: Mapping[str, Any], progress: Progress,
    telemetry: bool = True, teardown: Teardown | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
    load_workers: int = 1,
) -> dict[str, Any]:
    """Deploy ``arm``, wait Ready, inject its fault, warm up, measure ``load`` into ``out``, tear down
    (through ``teardown``, default in the foreground); return the round's ``result.json`` content.
    Raises HarnessError subclasses (the deployment is torn down on every way out)."""
    from harness.platforms import deploy

    teardown = teardown or Teardown(progress=progress)
    spec = arm.spec
    progress(f"deploying {arm.name}: {spec.topology} ({spec.replica_count} replica(s), model {spec.service.model}) "
             f"on {platform}; service CPUs {cpus.to_dict()['service']}, generator CPUs {cpus.to_dict()['generator']}")
    began = time.monotonic()
    deployment = deploy(spec, platform=platform, workdir=out / "platform", cpus=cpus.service)
    try:
        deployment.wait_ready(timeout_s=ready_timeout_s)
        progress(f"ready after {time.monotonic() - began:.1f} s at {deployment.endpoint}")
        teardown.settle()  # the previous round's deployment is gone before this one is measured
        injected = (inject_arm_fault(deployment, arm, warmup_s + load.duration_s + FAULT_MARGIN_S, progress)
                    if arm.fault else None)
        if warmup_s > 0:
            progress(f"warmed up with {warm_up(deployment, load, warmup_s)} request(s) in {warmup_s:g} s (not measured)")
        return run_session(deployment, load, out, generator_cpus=cpus.generator, prober=prober,
                           prober_interval_s=prober_interval_s, telemetry=telemetry, progress=progress,
                           metadata={**metadata, "injected_fault": injected, "warmup_s": warmup_s},
                           load_workers=load_workers)
    finally:
        teardown(deployment, out)


def run_rounds(
    arm: Arm,
    load: LoadProfile | RateLoad,
    out_dir: str | Path,
    *,
    rounds: int = 1,
    platform: str = "local",
    cpus: CpuPlan = CpuPlan(None, None),
    warmup_s: float = 0.0,
    prober: bool = True,
    prober_interval_s: float = 0.05,
    telemetry: bool = True,
    metadata: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    load_workers: int = 1,
) -> dict[str, Any]:
    """Measure ``load`` against ``arm`` in ``rounds`` fresh deployments; return the run's ``result.json``.

    One round is written flat into ``out_dir``; more go to ``round-NN/`` with a summary ``result.json``
    on top (`summarize_rounds`). Raises ConfigError for bad settings (before deploying anything),
    HarnessError when a round fails (the rounds completed by then are summarised first).
    """
    say = progress or (lambda _message: None)
    if rounds < 1:
        raise ConfigError("--rounds", rounds, "must be at least 1")
    if warmup_s < 0:
        raise ConfigError("--warmup-s", warmup_s, "must not be negative")
    arm.validate()
    out = resolve_path(out_dir, "out_dir")
    out.mkdir(parents=True, exist_ok=True)
    common = dict(platform=platform, cpus=cpus, warmup_s=warmup_s, prober=prober, prober_interval_s=prober_interval_s,
                  telemetry=telemetry, progress=say, load_workers=load_workers)
    if rounds == 1:
        return measure_round(arm, load, out, metadata=dict(metadata or {}), **common)
    results: list[dict[str, Any]] = []
    teardown = Teardown(background=True, progress=say)
    try:
        for index in range(1, rounds + 1):
            say(f"round {index} of {rounds}")
            info = {"round": {"index": index}}
            results.append(measure_round(arm, load, out / round_dir_name(index), metadata={**(metadata or {}), **info},
                                         teardown=teardown, **common))
    finally:
        teardown.close()
        if results:
            summary = summarize_rounds(results, extra={"completed": len(results) == rounds})
            write_result(out / RESULT_FILE, summary)
    return summary


def parse_fault_params(pairs: Sequence[str], flag: str = "--fault-param") -> dict[str, Any]:
    """Return KEY=VALUE pairs as a dict (numbers parsed); raise ConfigError naming ``flag`` and a bad pair."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, pair, "expected KEY=VALUE, e.g. factor=1.1 or delay_ms=30")
        try:
            params[key.strip()] = float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            params[key.strip()] = text
    return params
