"""`harness bench service`: the service's throughput against its raw limit and a naive server.

Three measurements in one run, each in its own process so cores and thread counts are controlled,
interleaved in rounds (raw, service, naive, raw, ...) so that outside CPU load on a shared machine
hits all three alike:
  raw      the model's batched forward loop at max_batch_size (`harness.bench.rawloop`), pinned to
           the server's core(s) with the server's torch thread count;
  service  `python -m harness.service` on those core(s), saturated over HTTP by a closed-loop
           aiohttp generator (`harness.load.closed_loop`) pinned to the other core(s);
  naive    the same stack with batching off (max_batch_size=1: one forward pass per request).
efficiency = service / raw samples/s and speedup_vs_naive = service / naive samples/s, each the
median over rounds of that round's ratio; efficiency_cpu compares samples per CPU-second granted
(insensitive to other processes sharing the core). Every process is torn down in a ``finally``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import processes
from harness.cpus import plan_cpus, usable_cpus
from harness.errors import HarnessError
from harness.signals import interrupts_held

__all__ = ["BenchSettings", "TARGET_EFFICIENCY", "TARGET_SPEEDUP", "pick_cores", "ServerProcess", "run_service_bench"]

TARGET_EFFICIENCY = 0.80
TARGET_SPEEDUP = 2.0
_READY_TIMEOUT_S = 300.0  # first use generates the weights (a few seconds; far longer for fp16 on CPU)
_STOP_GRACE_S = 10.0  # a server drains on SIGTERM, a loop ends at the end of its input


@dataclass
class BenchSettings:
    """What to benchmark and for how long (seconds per measurement window)."""

    model: str = "ranker-mlp"
    precision: str = "fp32"
    max_batch_size: int = 32
    concurrency: int | None = None  # default: 2 x max_batch_size
    duration_s: float = 12.0  # measured seconds per variant, split over the rounds
    rounds: int = 8
    warmup_s: float = 0.5
    max_queue_delay_ms: float = 50.0
    torch_threads: int = 1
    device: str = "auto"
    weights_dir: str | None = None
    python: str = field(default=sys.executable)

    @property
    def load_concurrency(self) -> int:
        return self.concurrency or 2 * self.max_batch_size


def pick_cores() -> tuple[list[int], list[int]]:
    """Return ``(server_cores, client_cores)`` by `harness.cpus.plan_cpus`: the first of the service's CPUs
    (one server core, as ``torch_threads`` defaults to 1) and the client's; both every usable CPU when
    the plan pins nothing (a single core)."""
    cores = usable_cpus()
    plan = plan_cpus(cores)
    server = list(plan.service[:1]) if plan.service else cores
    client = list(plan.generator) if plan.generator else cores
    return server, client


class _Child:
    """A pinned child process whose stdout lines are collected by a thread; always stopped on exit."""

    def __init__(self, command: list[str], cores: list[int], what: str, stdin: bool = False) -> None:
        self.command = command
        self.cores = cores
        self.what = what
        self._stdin = stdin
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {"PYTHONUNBUFFERED": "1", "HARNESS_FAULT_TOKEN": None}  # the benchmark never needs the fault hooks
        with interrupts_held():  # an interrupt lands once the child is recorded here, for `stop` to end it
            self.process = processes.spawn(
                self.command, cpus=self.cores, env=env, stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_event(self, timeout_s: float) -> dict[str, Any]:
        """Return the next JSON line the child prints; raise HarnessError on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"{self.what}: no answer within {timeout_s:.0f} s")
            try:
                line = self._lines.get(timeout=min(0.5, remaining))
            except queue.Empty:
                continue
            if line is None:
                raise HarnessError(f"{self.what} exited: {self.stderr_tail()}")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                return event

    def ask(self, line: str, timeout_s: float) -> dict[str, Any]:
        """Send one request line; return the child's JSON answer."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.next_event(timeout_s)

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].strip()

    def cpu_s(self) -> float:
        """Return the child's CPU seconds so far (user + system), from /proc."""
        assert self.process is not None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """End the child: close stdin / SIGTERM (a server drains), then SIGKILL after 10 s."""
        process = self.process
        if process is not None:
            if self._stdin and process.stdin is not None and process.poll() is None:
                process.stdin.close()  # its end of input: it exits by itself
                processes.wait_bounded(process, _STOP_GRACE_S)
            processes.stop(process, grace_s=_STOP_GRACE_S)
        self._stderr.close()

    def __enter__(self) -> "_Child":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(_Child):
    """`python -m harness.service` on a free port, pinned to ``cores``; ready once entered."""

    def __init__(self, settings: BenchSettings, cores: list[int], max_batch_size: int, max_queue_delay_ms: float) -> None:
        command = [
            settings.python, "-m", "harness.service", "--port", "0", "--model", settings.model,
            "--precision", settings.precision, "--device", settings.device,
            "--max-batch-size", str(max_batch_size), "--max-queue-delay-ms", str(max_queue_delay_ms),
            "--max-queue-size", str(max(256, 4 * settings.load_concurrency)),
            "--torch-threads", str(settings.torch_threads), "--warmup-iters", "4", "--grace-period-s", "5",
        ]
        if settings.weights_dir:
            command += ["--weights-dir", settings.weights_dir]
        super().__init__(command, cores, f"service (max_batch_size={max_batch_size})")
        self.base_url = ""
        self.ready_event: dict[str, Any] = {}

    def start(self) -> None:
        super().start()
        try:
            while True:
                event = self.next_event(_READY_TIMEOUT_S)
                if event.get("event") == "load_failed":
                    raise HarnessError(f"{self.what} could not load the model: {event.get('error')}")
                if event.get("event") == "ready":
                    break
        except BaseException:
            self.stop()
            raise
        self.ready_event = event
        self.base_url = f"http://127.0.0.1:{event['port']}"


def _mean_batch(base_url: str) -> float | None:
    from harness.service.client import ServiceUnreachable, scrape_metrics

    try:
        samples = scrape_metrics(base_url)
    except (ServiceUnreachable, HarnessError):
        return None
    count = sum(v for k, v in samples.items() if k.startswith("harness_batch_size_count"))
    total = sum(v for k, v in samples.items() if k.startswith("harness_batch_size_sum"))
    return round(total / count, 2) if count else None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _service_window(load: _Child, server: ServerProcess, settings: BenchSettings, window_s: float) -> dict[str, Any]:
    cpu_before, wall_before = server.cpu_s(), time.monotonic()
    request = json.dumps({"url": server.base_url, "warmup_s": settings.warmup_s, "duration_s": window_s})
    result = load.ask(request, settings.warmup_s + window_s + 60)
    result["server_cpu_percent"] = round(100 * (server.cpu_s() - cpu_before) / (time.monotonic() - wall_before), 1)
    return result


def run_service_bench(settings: BenchSettings, progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Measure raw, service and naive throughput in interleaved rounds; return the figures as a flat dict.

    Each round measures all three back to back, so a burst of outside CPU load hits the figures it
    is compared with; efficiency and speedup are the medians of the per-round ratios. Raises HarnessError.
    """
    server_cores, client_cores = pick_cores()
    started = time.monotonic()
    window_s = settings.duration_s / settings.rounds
    python = settings.python
    raw_command = [
        python, "-m", "harness.bench.rawloop", "--windows", "--model", settings.model, "--precision", settings.precision,
        "--batch", str(settings.max_batch_size), "--torch-threads", str(settings.torch_threads), "--device", settings.device,
    ]
    if settings.weights_dir:
        raw_command += ["--weights-dir", settings.weights_dir]
    load_command = [python, "-m", "harness.load.closed_loop", "--windows", "--model", settings.model, "--concurrency", str(settings.load_concurrency)]
    raws: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    naives: list[dict[str, Any]] = []
    progress(f"starting: raw loop and two servers on core(s) {server_cores}, load generator on {client_cores}")
    with _Child(raw_command, server_cores, "raw forward loop", stdin=True) as raw:
        raw.next_event(_READY_TIMEOUT_S)  # loads (and on first use generates) the weights before the servers do
        with ServerProcess(settings, server_cores, settings.max_batch_size, settings.max_queue_delay_ms) as server, \
                ServerProcess(settings, server_cores, 1, 0.0) as naive_server, \
                _Child(load_command, client_cores, "load generator", stdin=True) as load:
            load.next_event(60)
            for index in range(settings.rounds):
                progress(f"round {index + 1}/{settings.rounds}: raw, batching service, naive service ({window_s:g} s each)")
                raws.append(raw.ask(f"{window_s}", window_s + 120))
                services.append(_service_window(load, server, settings, window_s))
                naives.append(_service_window(load, naive_server, settings, window_s))
            mean_batch = _mean_batch(server.base_url)
            device = server.ready_event.get("device")
    return _summarise(settings, raws, services, naives, mean_batch, device, server_cores, client_cores, started)


def _summarise(
    settings: BenchSettings,
    raws: list[dict[str, Any]],
    services: list[dict[str, Any]],
    naives: list[dict[str, Any]],
    mean_batch: float | None,
    device: str | None,
    server_cores: list[int],
    client_cores: list[int],
    started: float,
) -> dict[str, Any]:
    rate = lambda runs: [run["samples_per_s"] for run in runs]  # noqa: E731
    efficiencies = [s / r if r else 0.0 for s, r in zip(rate(services), rate(raws))]
    # per CPU-second actually granted: insensitive to other processes taking turns on the same core
    per_cpu = lambda run, key: run["samples_per_s"] / max(run[key], 1e-9) * 100  # noqa: E731
    cpu_efficiencies = [per_cpu(s, "server_cpu_percent") / per_cpu(r, "cpu_percent") for s, r in zip(services, raws)]
    speedups = [s / n if n else float("inf") for s, n in zip(rate(services), rate(naives))]
    result = {
        **{key: value for key, value in asdict(settings).items() if key not in ("python", "concurrency", "weights_dir")},
        "concurrency": settings.load_concurrency,
        "device": device,
        "raw_samples_per_s": round(_median(rate(raws)), 2),
        "service_samples_per_s": round(_median(rate(services)), 2),
        "naive_samples_per_s": round(_median(rate(naives)), 2),
        "efficiency": round(_median(efficiencies), 4),
        "speedup_vs_naive": round(_median(speedups), 3),
        "efficiency_cpu": round(_median(cpu_efficiencies), 4),
        "ratio_method": "median over rounds of each round's ratio (raw, service and naive measured back to back)",
        "p50_ms": round(_median([s["p50_ms"] for s in services]), 3),
        "p99_ms": round(max(s["p99_ms"] for s in services), 3),
        "naive_p50_ms": round(_median([n["p50_ms"] for n in naives]), 3),
        "naive_p99_ms": round(max(n["p99_ms"] for n in naives), 3),
        "raw_forward_p50_ms": round(_median([r["forward_p50_ms"] for r in raws]), 3),
        "raw_samples_per_cpu_s": round(_median([r["samples_per_cpu_s"] or 0.0 for r in raws]), 2),
        "mean_batch_size": mean_batch,
        "service_errors": sum(s["errors"] for s in services),
        "naive_errors": sum(n["errors"] for n in naives),
        "client_cpu_percent": max(s["client_cpu_percent"] for s in services),
        "raw_cpu_percent": round(_median([r["cpu_percent"] for r in raws]), 1),
        "server_cpu_percent": round(_median([s["server_cpu_percent"] for s in services]), 1),
        "rounds_efficiency": [round(e, 4) for e in efficiencies],
        "rounds_speedup_vs_naive": [round(x, 3) for x in speedups],
        "server_cores": server_cores,
        "client_cores": client_cores,
        "cores_shared": server_cores == client_cores,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    result["meets_targets"] = result["efficiency"] >= TARGET_EFFICIENCY and result["speedup_vs_naive"] >= TARGET_SPEEDUP
    return result
