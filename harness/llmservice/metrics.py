"""The generative service's Prometheus metrics, named as vLLM's (``vllm:`` prefix, label ``model_name``).

vLLM's names and meanings (docs.vllm.ai, "Production Metrics"), so dashboards and alerts written for
vLLM read this server too:

- ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges): sequences in the running batch, and queued
- ``vllm:kv_cache_usage_perc`` (gauge, 0 to 1): fraction of KV-cache blocks in use
- ``vllm:num_preemptions_total`` (counter): running sequences preempted (recomputed) for want of KV cache
- ``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total`` (counters)
- ``vllm:request_success_total{finished_reason}`` (counter): finished requests by reason (stop, length, abort, error)
- ``vllm:time_to_first_token_seconds``, ``vllm:inter_token_latency_seconds`` (histograms; the latter's older
  name ``vllm:time_per_output_token_seconds`` is served too), ``vllm:e2e_request_latency_seconds``,
  ``vllm:request_queue_time_seconds`` (arrival to first admission), ``vllm:request_time_per_output_token_seconds``
  (a request's decode time over its output tokens after the first), ``vllm:iteration_tokens_total`` (tokens per step)
- ``vllm:num_max_model_len`` / ``vllm:kv_cache_tokens`` (gauges: the configured limits), the process's resident
  memory and the harness's ``harness_faults_active{kind}``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from harness.service.metrics import CONTENT_TYPE, Histogram

__all__ = ["LLMMetrics", "CONTENT_TYPE"]

_LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                      40.0, 80.0)
_TOKEN_GAP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_STEP_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _resident_bytes() -> int:
    import os

    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class LLMMetrics:
    """Counters and histograms, updated on the event loop; `render` returns the exposition text."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.ttft = Histogram(_LATENCY_BUCKETS_S)
        self.itl = Histogram(_TOKEN_GAP_BUCKETS_S)
        self.tpot = Histogram(_TOKEN_GAP_BUCKETS_S)
        self.e2e = Histogram(_LATENCY_BUCKETS_S)
        self.queue_time = Histogram(_LATENCY_BUCKETS_S)
        self.iteration_tokens = Histogram(_STEP_TOKEN_BUCKETS)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.finished: dict[str, int] = defaultdict(int)
        self.http: dict[tuple[str, int], int] = defaultdict(int)

    def observe_finished(self, reason: str, e2e_s: float, output_tokens: int, decode_s: float) -> None:
        """Count a request that finished generating (``stop`` or ``length``)."""
        self.finished[reason] += 1
        self.e2e.observe(e2e_s)
        if output_tokens > 1:
            self.tpot.observe(decode_s / (output_tokens - 1))

    def render(self, running: int, waiting: int, kv_usage: float, limits: dict[str, int],
               faults: Callable[[], dict[str, int]]) -> bytes:
        """Return the Prometheus text exposition (format 0.0.4)."""
        label = {"model_name": self.model}
        tag = f'{{model_name="{self.model}"}}'
        out: list[str] = []

        def scalar(name: str, kind: str, help_text: str, value: float) -> None:
            shown = str(int(value)) if float(value).is_integer() else repr(float(value))
            out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{tag} {shown}"])

        def histogram(name: str, help_text: str, values: Histogram) -> None:
            out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} histogram", *values.render(name, label)])

        scalar("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", running)
        scalar("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", waiting)
        scalar("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", round(kv_usage, 6))
        scalar("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", self.preemptions)
        scalar("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", self.prompt_tokens)
        scalar("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", self.generation_tokens)
        out += ["# HELP vllm:request_success_total Count of successfully processed requests.",
                "# TYPE vllm:request_success_total counter"]
        out += [f'vllm:request_success_total{{model_name="{self.model}",finished_reason="{reason}"}} {count}'
                for reason, count in sorted(self.finished.items())]
        histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", self.ttft)
        histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", self.itl)
        histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds "
                                                        "(the inter-token latency's older name).", self.itl)
        histogram("vllm:request_time_per_output_token_seconds", "Histogram of a request's time per output token.", self.tpot)
        histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", self.e2e)
        histogram("vllm:request_queue_time_seconds", "Histogram of time spent waiting in the queue.", self.queue_time)
        histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", self.iteration_tokens)
        scalar("vllm:num_max_model_len", "gauge", "The maximum context length (prompt plus output tokens).",
               limits["max_model_len"])
        scalar("vllm:kv_cache_tokens", "gauge", "Tokens the KV cache holds in all.", limits["kv_cache_tokens"])
        out += ["# HELP harness_http_requests_total HTTP requests by route and status.",
                "# TYPE harness_http_requests_total counter"]
        out += [f'harness_http_requests_total{{route="{route}",code="{code}"}} {count}'
                for (route, code), count in sorted(self.http.items())]
        scalar("harness_process_resident_memory_bytes", "gauge", "Resident set size of the server process.",
               _resident_bytes())
        out += ["# HELP harness_faults_active Injected faults currently active, by kind.",
                "# TYPE harness_faults_active gauge"]
        out += [f'harness_faults_active{{kind="{kind}"}} {count}' for kind, count in sorted(faults().items())]
        return ("\n".join(out) + "\n").encode()
