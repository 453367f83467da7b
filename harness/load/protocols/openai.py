"""OpenAI-compatible text generation: ``/v1/chat/completions`` and ``/v1/completions``, streamed or not.

Request n's prompt and ``max_tokens`` come from `harness.promptspec.PromptPlan` (fixed, uniform ranges or a
JSONL dataset, drawn from a seed): the same n is the same request in every sender.

Definitions (per request; the report and `harness.measure.tokens` quote them). Every time runs from
the request's *intended* send time, as ``RequestRecord.latency_ms`` does (open-loop load: the schedule),
so a request that waited in the generator counts that wait in its TTFT too.

- **Streamed** (``stream: true``, Server-Sent Events ``data: {json}`` lines ending with
  ``data: [DONE]``): an *output event* is a chunk whose choice carries text (``delta.content`` for
  chat, ``text`` for completions; an empty string, a role-only delta or a usage-only chunk is not one).
  **TTFT** is the arrival of the first output event. **Inter-token latencies** (ITL) are the gaps
  between consecutive output events (a chunk that carries several tokens is one gap, as vLLM's
  benchmark counts it). **Output tokens** is the server's ``usage.completion_tokens`` when a chunk
  carries it (``stream_options.include_usage`` is asked for), else the number of output events; a
  usage below the number of output events is no count (each event carries a token at least:
  LitServe's ``OpenAISpec``, for one, reports ``completion_tokens: 0`` unless the model counts them),
  and the events are taken.
  **TPOT** (time per output token, the first excluded) is ``(e2e - TTFT) / (output tokens - 1)``,
  undefined (NaN) for fewer than 2 tokens. **End-to-end latency** is the record's ``latency_ms``: to
  the end of the stream.
- **Not streamed**: the whole answer is the first token, so TTFT equals the end-to-end latency; there
  are no inter-token gaps and TPOT is undefined; output tokens are ``usage.completion_tokens`` (0 when
  the server does not say).
- **A failure**, whatever was measured before it: a status other than 200, a transport error, an
  ``error`` object in the stream or answer, or a stream *cut*: it ended (the connection closed or the
  body finished) before ``data: [DONE]``, or without any choice's ``finish_reason``. A failed request
  is a record like any other (``ok`` false), never dropped from the statistics.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from harness.load.protocols.base import Adapter, HttpRequest, Piece, Reading, timed_lines
from harness.promptspec import LengthRange, PromptPlan, read_dataset

__all__ = ["OpenAiAdapter", "CHAT_PATH", "COMPLETIONS_PATH"]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
DONE = b"[DONE]"


class OpenAiAdapter(Adapter):
    """``chat`` (messages in, ``delta.content`` out) or completions (``prompt`` in, ``text`` out)."""

    def __init__(self, *, chat: bool, model: str | None, prompt: str, max_tokens: int | LengthRange, stream: bool,
                 path: str | None = None, headers: dict[str, str] | None = None,
                 prompt_words: int | LengthRange | None = None, dataset: str | None = None,
                 dataset_lengths: bool = True, seed: int = 0) -> None:
        self.name = "openai-chat" if chat else "openai-completions"
        self.chat, self.stream = chat, stream
        self.path = path or (CHAT_PATH if chat else COMPLETIONS_PATH)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if stream:
            self.headers.setdefault("Accept", "text/event-stream")
            self.headers.setdefault("Accept-Encoding", "identity")  # events read as they come, never compressed
        self.model = model
        self.plan = PromptPlan(prompt=prompt, max_tokens=max_tokens, prompt_words=prompt_words, seed=seed,
                               dataset=read_dataset(dataset, chat=chat) if dataset is not None else None,
                               dataset_lengths=dataset_lengths)
        varies = dataset is not None or prompt_words is not None or isinstance(max_tokens, LengthRange)
        self.body = None if varies else self._body(0)  # one body for every request when nothing is drawn

    def _body(self, n: int) -> bytes:
        prompt, messages, max_tokens = self.plan.draw(n)
        body: dict[str, Any] = {"model": self.model} if self.model else {}
        if self.chat:
            body["messages"] = list(messages) if messages is not None else [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update({"max_tokens": max_tokens, "stream": self.stream})
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()

    def request(self, n: int) -> HttpRequest:
        return HttpRequest("POST", self.path, self.headers, self.body if self.body is not None else self._body(n),
                           self.stream)

    def read(self, status: int, pieces: Sequence[Piece], latency_ms: float, error: str = "") -> Reading:
        if self.stream and status == 200:  # a transport error mid-stream is a cut: say what came before it
            return self._read_stream(status, pieces, latency_ms, error)
        if error:
            return Reading(False, status, error)
        if status != 200:
            return Reading(False, status, f"HTTP {status}")
        if not self.stream:
            return self._read_answer(status, b"".join(data for _, data in pieces), latency_ms)
        return self._read_stream(status, pieces, latency_ms, error)

    def _text(self, choice: Any) -> str:
        if not isinstance(choice, dict):
            return ""
        if self.chat:
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        else:
            text = choice.get("text")
        return text if isinstance(text, str) else ""

    def _read_answer(self, status: int, body: bytes, latency_ms: float) -> Reading:
        try:
            answer = json.loads(body)
        except ValueError:
            return Reading(False, status, f"the answer is not JSON: {body[:60]!r}")
        if not isinstance(answer, dict) or "error" in answer or not isinstance(answer.get("choices"), list) \
                or not answer["choices"]:
            return Reading(False, status, f"no choices in the answer: {body[:80]!r}")
        tokens = _usage_tokens(answer)
        return Reading(True, status, ttft_ms=latency_ms, output_tokens=tokens if tokens is not None else 0)

    def _read_stream(self, status: int, pieces: Sequence[Piece], latency_ms: float, error: str) -> Reading:
        lines, _unfinished = timed_lines(pieces)
        times: list[float] = []
        done = finished = False
        usage: int | None = None
        for t_ms, line in lines:
            if not line.startswith(b"data:"):
                continue  # comments (": ping"), event names, ids, blank separators
            data = line[5:].strip()
            if data == DONE:
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                return Reading(False, status, f"a stream event is not JSON: {data[:60]!r}")
            if not isinstance(chunk, dict):
                return Reading(False, status, f"a stream event is not an object: {data[:60]!r}")
            if "error" in chunk:
                return Reading(False, status, f"error in the stream: {str(chunk['error'])[:120]}")
            usage = _usage_tokens(chunk) if _usage_tokens(chunk) is not None else usage
            for choice in chunk.get("choices") or []:
                finished = finished or bool(isinstance(choice, dict) and choice.get("finish_reason"))
            if any(self._text(choice) for choice in chunk.get("choices") or []):
                times.append(t_ms)
        if error or not done or not finished:
            why = error or f"it ended without {'data: [DONE]' if not done else 'a finish_reason'}"
            return Reading(False, status, f"stream cut after {len(times)} output event(s): {why}",
                           ttft_ms=times[0] if times else math.nan, output_tokens=len(times),
                           itl_ms=tuple(b - a for a, b in zip(times, times[1:])))
        tokens = usage if usage is not None and usage >= len(times) else len(times)  # a usage below them: no count
        ttft = times[0] if times else math.nan
        tpot = (latency_ms - ttft) / (tokens - 1) if tokens > 1 and times else math.nan
        return Reading(True, status, ttft_ms=ttft, tpot_ms=tpot, output_tokens=tokens,
                       itl_ms=tuple(b - a for a, b in zip(times, times[1:])))


def _usage_tokens(message: dict[str, Any]) -> int | None:
    usage = message.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None
