"""The service's Prometheus metrics, exposed as text format 0.0.4 by a hand-written renderer.

Counters and histograms are updated on the event loop (single-threaded, so no locks). GPU metrics
come from NVML (``pynvml`` from nvidia-ml-py) and are emitted only when NVML initialises and sees a
device: an absent GPU means absent series, never zeros.
"""

from __future__ import annotations

import bisect
import os
import resource
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Histogram", "ServiceMetrics", "CONTENT_TYPE", "LATENCY_BUCKETS_S", "batch_buckets"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Return batch-size histogram bounds: powers of two up to, and including, ``max_batch_size``."""
    bounds = []
    size = 1
    while size < max_batch_size:
        bounds.append(float(size))
        size *= 2
    bounds.append(float(max_batch_size))
    return tuple(bounds)


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """A cumulative Prometheus histogram with fixed bucket bounds."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: dict[str, str]) -> list[str]:
        lines = []
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            cumulative += count
            lines.append(f"{name}_bucket{_labels({**labels, 'le': _number(bound)})} {cumulative}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(self.total)}")
        lines.append(f"{name}_count{_labels(labels)} {self.count}")
        return lines


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_BYTES
    except OSError:  # not Linux: peak RSS is the best the standard library offers
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Nvml:
    """NVML handles if a GPU and the library are present; otherwise ``available`` is False."""

    def __init__(self) -> None:
        self.available = False
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            self.available = count > 0
        except Exception:  # no library, no driver, no device: GPU series are simply not emitted
            self.available = False

    def lines(self) -> list[str]:
        if not self.available:
            return []
        memory = ["# HELP harness_gpu_memory_used_bytes GPU memory in use (NVML).", "# TYPE harness_gpu_memory_used_bytes gauge"]
        total = ["# HELP harness_gpu_memory_total_bytes GPU memory size (NVML).", "# TYPE harness_gpu_memory_total_bytes gauge"]
        util = ["# HELP harness_gpu_utilization_ratio GPU busy fraction over NVML's last sample period.", "# TYPE harness_gpu_utilization_ratio gauge"]
        for index, handle in enumerate(self._handles):
            try:
                info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            except Exception:  # a device that stops answering is left out of this scrape
                continue
            label = _labels({"gpu": str(index)})
            memory.append(f"harness_gpu_memory_used_bytes{label} {int(info.used)}")
            total.append(f"harness_gpu_memory_total_bytes{label} {int(info.total)}")
            util.append(f"harness_gpu_utilization_ratio{label} {_number(rates.gpu / 100.0)}")
        return memory + total + util if len(memory) > 2 else []


class ServiceMetrics:
    """The service's counters, histograms and gauges; `render` returns the exposition text."""

    def __init__(self, model: str, max_batch_size: int) -> None:
        self.model = model
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(batch_buckets(max_batch_size))
        self.batch_seconds = Histogram(LATENCY_BUCKETS_S)
        self.model_load_s: float | None = None
        self.in_flight = 0
        self._nvml: _Nvml | None = None

    def observe_request(self, model: str, code: int, duration_s: float) -> None:
        """Count one inference request and its latency (unknown model names share one label)."""
        self.requests[(model, str(code))] += 1
        histogram = self.latency.get(model)
        if histogram is None:
            histogram = self.latency[model] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(duration_s)

    def observe_batch(self, size: int, duration_s: float) -> None:
        """Record one forward pass: its batch size in samples and its duration."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(duration_s)

    def render(self, queue_depth: int, ready: bool, faults: Callable[[], dict[str, int]]) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        out = [
            "# HELP harness_requests_total Inference requests by model and HTTP status code.",
            "# TYPE harness_requests_total counter",
        ]
        out += [f"harness_requests_total{_labels({'model': m, 'code': c})} {n}" for (m, c), n in sorted(self.requests.items())]
        out += [
            "# HELP harness_request_duration_seconds Inference request latency inside the service.",
            "# TYPE harness_request_duration_seconds histogram",
        ]
        for model, histogram in sorted(self.latency.items()):
            out += histogram.render("harness_request_duration_seconds", {"model": model})
        out += ["# HELP harness_batch_size Samples per forward pass.", "# TYPE harness_batch_size histogram"]
        out += self.batch_size.render("harness_batch_size", {"model": self.model})
        out += ["# HELP harness_batch_duration_seconds Duration of one forward pass.", "# TYPE harness_batch_duration_seconds histogram"]
        out += self.batch_seconds.render("harness_batch_duration_seconds", {"model": self.model})
        gauges = [
            ("harness_queue_depth", "Requests waiting for a batch.", queue_depth),
            ("harness_in_flight_requests", "Inference requests being handled.", self.in_flight),
            ("harness_ready", "1 when the model is loaded and warmed up and the service is not draining.", int(ready)),
            ("harness_process_resident_memory_bytes", "Resident set size of the service process.", _resident_bytes()),
        ]
        if self.model_load_s is not None:
            gauges.append(("harness_model_load_seconds", "Seconds from process start to ready (load, warm-up, simulated delay).", self.model_load_s))
        for name, help_text, value in gauges:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{_labels({'model': self.model})} {_number(value)}"]
        out += ["# HELP harness_faults_active Injected faults currently active, by kind.", "# TYPE harness_faults_active gauge"]
        out += [f"harness_faults_active{_labels({'kind': kind})} {count}" for kind, count in sorted(faults().items())]
        if self._nvml is None:
            self._nvml = _Nvml()
        out += self._nvml.lines()
        return ("\n".join(out) + "\n").encode()
