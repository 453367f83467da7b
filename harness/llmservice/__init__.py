"""The reference generative service: a small decoder-only transformer behind the OpenAI-compatible API.

Run it with ``python -m harness.llmservice --port N``. Built as the reference models are (made in code
from a seed, integrity-checked weights, no download: `harness.llmservice.model`), served with the
mechanics that make an LLM server fail the way real ones do: continuous (iteration-level) batching in
one engine loop, a KV cache of a fixed size in tokens with admission control and preemption by
recompute (`harness.llmservice.scheduler`, `harness.llmservice.engine`), a maximum context length,
Prometheus metrics named as vLLM's (`harness.llmservice.metrics`), liveness, readiness and an
inference-level health check, and the harness's fault hooks (`harness.llmservice.api`).
"""

__all__ = ["MODEL_NAME"]

MODEL_NAME = "reference-llm"  # what /v1/models lists and requests may name
