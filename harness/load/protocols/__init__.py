"""Protocols behind one small adapter interface, used alike by Locust, the rate generator and the prober.

An adapter (`Adapter`) builds the n-th request from its settings (`HttpRequest`: method, path, headers,
body, streamed or not) and reads a response into a `Reading`: ok or not, status, error, and the
protocol's own fields of a request record (`harness.request_records.RequestRecord`: TTFT, TPOT,
inter-token latencies, output tokens). One module each:

- `harness.load.protocols.oip_v2`: Open Inference Protocol v2 (the reference service, KServe, Triton);
- `harness.load.protocols.openai`: OpenAI-compatible chat and completions, streamed (SSE) or not;
- `harness.load.protocols.http_json`: any JSON over HTTP, bodies from a template or a JSONL file.

The senders are `harness.load.protocols.aio` (asyncio: rate generator, prober) and the locustfile
(gevent). Settings: `harness.protocolspec.ProtocolSettings`.
"""

from __future__ import annotations

from harness.load.protocols.base import Adapter, HttpRequest, Piece, Reading
from harness.protocolspec import PROTOCOL_NAMES, ProtocolSettings, protocol_settings

__all__ = ["PROTOCOL_NAMES", "Adapter", "HttpRequest", "Piece", "Reading", "ProtocolSettings", "protocol_settings",
           "build_adapter"]


def build_adapter(settings: ProtocolSettings) -> Adapter:
    """Return the adapter of ``settings``; raise ConfigError naming the field for a bad template or bodies file.

    The harness builds it once before starting a child (so bad settings fail there, as one line); each
    child builds its own.
    """
    if settings.protocol == "oip-v2":
        from harness.load.protocols.oip_v2 import OipV2Adapter

        return OipV2Adapter(settings.reference_model, settings.batch_size, path=settings.path, headers=settings.headers,
                            inputs=settings.inputs, bodies_file=settings.bodies_file)
    if settings.protocol in ("openai-chat", "openai-completions"):
        from harness.load.protocols.openai import OpenAiAdapter

        return OpenAiAdapter(chat=settings.protocol == "openai-chat", model=settings.model, prompt=settings.prompt,
                             max_tokens=settings.max_tokens, stream=settings.stream, path=settings.path,
                             headers=settings.headers, prompt_words=settings.prompt_words, dataset=settings.dataset,
                             dataset_lengths=settings.dataset_lengths, seed=settings.seed)
    from harness.load.protocols.http_json import HttpJsonAdapter

    return HttpJsonAdapter(method=settings.method, path=settings.path or "/", body_template=settings.body_template,
                           bodies_file=settings.bodies_file, success_status=settings.success_status,
                           success_field=settings.success_field, headers=settings.headers)
