"""The OpenAI-compatible wire format: requests read and checked, answers and stream chunks built.

`parse_request` turns a ``/v1/completions`` or ``/v1/chat/completions`` body into a `GenerateRequest`
or raises `RequestError` (status 400, or 404 for a model this server does not serve) naming the field
and the value, in OpenAI's error object (``{"error": {"message", "type", "param", "code"}}``).
Fields OpenAI defines that change nothing here (``user``, penalties, ``logit_bias`` ...) are accepted
and ignored, as vLLM does; ``n`` above 1 and ``logprobs`` are refused, naming the field. The context
rule is vLLM's: prompt tokens plus ``max_tokens`` at most ``max_model_len``, else 400 naming
``max_tokens`` (or the prompt, when it alone is too long). ``max_tokens`` defaults to 16 for
completions (OpenAI's) and to the rest of the context for chat (vLLM's).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from harness.llmservice.tokenizer import ChatFormatError, chat_prompt, encode

__all__ = ["RequestError", "GenerateRequest", "parse_request", "error_body", "completion_body", "stream_chunk",
           "usage_chunk", "models_body", "COMPLETIONS_DEFAULT_MAX_TOKENS"]

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_MAX_STOP = 4


class RequestError(Exception):
    """A request refused before it reaches the engine: ``status`` (400 or 404), ``param`` the field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


@dataclass(frozen=True)
class GenerateRequest:
    chat: bool
    model: str
    prompt_ids: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    id: str
    created: int


def error_body(message: str, param: str | None = None, status: int = 400) -> bytes:
    """Return OpenAI's error object as JSON bytes."""
    kind = {400: "invalid_request_error", 404: "not_found_error", 503: "service_unavailable"}.get(status, "server_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": status}})


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float, *, open_low: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or value > high or (open_low and value == low):
        raise RequestError(f"{name}={_show(value)}: must be a number {'>' if open_low else '>='} {low:g} and <= {high:g}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name}={_show(value)}: must be an integer", name)
    return value


def _prompt(body: dict[str, Any], chat: bool) -> list[int]:
    if chat:
        try:
            return encode(chat_prompt(body.get("messages")))
        except ChatFormatError as exc:
            raise RequestError(str(exc), "messages") from None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if any(not 0 <= t < 256 for t in prompt):
            raise RequestError(f"prompt={_show(prompt)}: token ids must be bytes (0 to 255) for this byte-level model",
                               "prompt")
        return [256, *prompt]
    if not isinstance(prompt, str):
        raise RequestError(f"prompt={_show(prompt)}: must be a string (one prompt per request) or a list of token ids",
                           "prompt")
    return encode(prompt)


def parse_request(raw: bytes, *, chat: bool, served_model: str, max_model_len: int) -> GenerateRequest:
    """Return the request in ``raw``; raise RequestError naming the field and value (see the module docstring)."""
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(f"body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if model is not None and model != served_model:
        raise RequestError(f"model={_show(model)}: the model does not exist; this server serves {served_model!r}",
                           "model", status=404)
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise RequestError(f"n={n}: only one choice per request (n=1) is served", "n")
    if body.get("logprobs") not in (None, False, 0):
        raise RequestError(f"logprobs={_show(body.get('logprobs'))}: log probabilities are not served", "logprobs")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"stream={_show(stream)}: must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool)):
        raise RequestError(f"stream_options={_show(options)}: must be an object with a boolean include_usage",
                           "stream_options")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, list) else () if stop is None else None
    if stops is None or len(stops) > _MAX_STOP or any(not isinstance(s, str) or not s for s in stops):
        raise RequestError(f"stop={_show(stop)}: must be a non-empty string or a list of up to {_MAX_STOP} of them", "stop")
    seed = _integer(body, "seed")
    prompt_ids = _prompt(body, chat)
    room = max_model_len - len(prompt_ids)
    field = "messages" if chat else "prompt"
    if room < 1:
        raise RequestError(f"{field}: {len(prompt_ids)} tokens; this model's maximum context length is {max_model_len} "
                           f"tokens, prompt and output together (max_model_len)", field)
    name = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    asked = _integer(body, name)
    if asked is not None and asked < 1:
        raise RequestError(f"{name}={asked}: must be at least 1", name)
    max_tokens = asked if asked is not None else (room if chat else COMPLETIONS_DEFAULT_MAX_TOKENS)
    if len(prompt_ids) + max_tokens > max_model_len:
        raise RequestError(f"{name}={max_tokens}: this model's maximum context length is {max_model_len} tokens; "
                           f"the {field} takes {len(prompt_ids)}, so at most {room} can be generated", name)
    prefix = "chatcmpl" if chat else "cmpl"
    return GenerateRequest(
        chat=chat, model=served_model, prompt_ids=prompt_ids, max_tokens=max_tokens, stream=stream,
        include_usage=bool(options and options.get("include_usage")),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0), top_p=_number(body, "top_p", 1.0, 0.0, 1.0, open_low=True),
        seed=seed, stop=stops, id=f"{prefix}-{uuid.uuid4().hex}", created=int(time.time()))


def _usage(request: GenerateRequest, completion_tokens: int) -> dict[str, int]:
    prompt = len(request.prompt_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def completion_body(request: GenerateRequest, text: str, finish_reason: str, completion_tokens: int) -> bytes:
    """Return the whole (unstreamed) answer."""
    if request.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish_reason}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    return orjson.dumps({"id": request.id, "object": kind, "created": request.created, "model": request.model,
                         "choices": [choice], "usage": _usage(request, completion_tokens)})


def stream_chunk(request: GenerateRequest, text: str, finish_reason: str | None, first: bool) -> bytes:
    """Return one Server-Sent Event carrying one token (and the finish reason on the last)."""
    if request.chat:
        delta: dict[str, str] = {"role": "assistant", "content": text} if first else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    chunk = {"id": request.id, "object": kind, "created": request.created, "model": request.model, "choices": [choice]}
    if request.include_usage:
        chunk["usage"] = None
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def usage_chunk(request: GenerateRequest, completion_tokens: int) -> bytes:
    """Return the last event before ``[DONE]`` when ``stream_options.include_usage``: no choices, the usage."""
    kind = "chat.completion.chunk" if request.chat else "text_completion"
    return b"data: " + orjson.dumps({"id": request.id, "object": kind, "created": request.created, "model": request.model,
                                     "choices": [], "usage": _usage(request, completion_tokens)}) + b"\n\n"


def models_body(model: str, max_model_len: int, created: int) -> bytes:
    """Return ``GET /v1/models``'s list: the one model served."""
    return orjson.dumps({"object": "list", "data": [{"id": model, "object": "model", "created": created,
                                                      "owned_by": "harness", "max_model_len": max_model_len}]})
