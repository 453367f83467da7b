"""Chaos Toolkit activities that speak the OpenAI-compatible API: the requests that break an LLM server.

For a deployment whose target serves ``/v1/completions`` or ``/v1/chat/completions`` (the state file's
``protocol`` says which, and the model to name; `harness.protocolspec`). Plain ``http.client`` in
threads (nothing heavy is imported: chaos imports this module in its own process); every error is an
`ActivityFailed` with one line, as in `harness.chaos.activities`.

- `long_prompt_request`: one request whose prompt is ``prompt_chars`` characters long, sent to one
  replica, and what the experiment expects of it: ``"refused"`` (a 4xx: the server guards its context
  and memory) or ``"oom-kill"`` (no answer: the replica died of it). The other outcome fails the activity,
  naming what happened.
- `generation_burst`: ``requests`` streamed generations of ``max_tokens`` each, all at once through the
  deployment's endpoint (the balancer); returns how many streams completed (``data: [DONE]``), were cut
  mid-answer (started, then ended without it: a failure to the client), refused (an HTTP error) or got
  no answer, their TTFT p50, and the preemptions the replicas counted meanwhile (``vllm:num_preemptions_total``
  summed over the replicas' ``/metrics``, None when a replica restarted or serves no such metric). With
  ``expect_preemptions`` it fails when none happened (the KV cache was never under pressure).
- `generation_stalls`: one streamed request straight to one replica must get no token within ``within_s``
  (its engine is wedged); a token in time fails it.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import failing, read_state_file, remember, replicas, select

__all__ = ["long_prompt_request", "generation_burst", "generation_stalls"]

EXPECTATIONS = ("refused", "oom-kill")
_PREEMPTIONS = "vllm:num_preemptions_total"
_MAX_REQUESTS = 1000


def _request(state: dict[str, Any], prompt: str, max_tokens: int, stream: bool) -> tuple[str, bytes]:
    """Return (path, body) of one generation in the state's protocol (chat unless it says completions)."""
    protocol = state.get("protocol") or {}
    chat = protocol.get("protocol") != "openai-completions"
    body: dict[str, Any] = {"max_tokens": max_tokens, "stream": stream}
    if protocol.get("model"):
        body["model"] = protocol["model"]
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    path = protocol.get("path") or ("/v1/chat/completions" if chat else "/v1/completions")
    return path, json.dumps(body).encode()


def _connection(url: str, timeout_s: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)


@failing
def long_prompt_request(state_file: str, prompt_chars: int = 16000, expect: str = "refused", replica: str = "first-ready",
                        timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one request with a ``prompt_chars``-character prompt to one replica; return what came of it.

    Fails when the outcome is not ``expect`` ("refused": a 4xx; "oom-kill": no answer, the replica died).
    """
    if expect not in EXPECTATIONS:
        raise ActivityFailed(f"expect={expect!r}: must be one of {', '.join(EXPECTATIONS)}")
    if isinstance(prompt_chars, bool) or not isinstance(prompt_chars, int) or not 1 <= prompt_chars <= 10_000_000:
        raise ActivityFailed(f"prompt_chars={prompt_chars!r}: must be an integer from 1 to 10000000")
    state = read_state_file(state_file)
    row = select(state, replica)[0]
    path, body = _request(state, "a" * prompt_chars, 1, stream=False)
    at = remember(row, "long_prompt_request")
    status, detail = None, ""
    connection = _connection(row["url"], timeout_s)
    try:
        connection.request("POST", path, body, {"content-type": "application/json"})
        answer = connection.getresponse()
        status, detail = answer.status, answer.read(400).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        detail = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    outcome = ("no answer" if status is None else "refused" if 400 <= status < 500 else
               "answered" if status < 400 else "server error")
    result = {"replica": row["name"], "prompt_chars": prompt_chars, "status": status, "outcome": outcome,
              "detail": detail[:300], "time_s": at}
    wanted = "refused" if expect == "refused" else "no answer"
    if outcome != wanted:
        raise ActivityFailed(f"expected {expect} but the request was {outcome}"
                             f"{f' (HTTP {status})' if status is not None else ''}: {detail[:200]}")
    return result


def _preemptions(state: dict[str, Any]) -> dict[int, float] | None:
    """Return each replica's preemption counter by pid, None when one cannot be read."""
    counts = {}
    for row in replicas(state):
        if not row.get("url") or not row.get("pid"):
            continue
        connection = _connection(row["url"], 5.0)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(_PREEMPTIONS)]
        if not values:
            return None
        counts[int(row["pid"])] = sum(values)
    return counts


def _stream(endpoint: str, path: str, body: bytes, timeout_s: float) -> tuple[str, float | None]:
    """Return (outcome, TTFT in ms) of one streamed generation."""
    started = time.perf_counter()
    connection = _connection(endpoint, timeout_s)
    first: float | None = None
    try:
        connection.request("POST", path, body, {"content-type": "application/json"})
        answer = connection.getresponse()
        if answer.status != 200:
            answer.read()
            return "refused", None
        while True:
            line = answer.readline()
            if not line:
                return "cut", first
            if line.startswith(b"data: [DONE]"):
                return "complete", first
            if first is None and line.startswith(b"data: {") and b'"choices":[{' in line.replace(b" ", b""):
                first = (time.perf_counter() - started) * 1000
    except (OSError, http.client.HTTPException):
        return ("cut" if first is not None else "failed"), first
    finally:
        connection.close()


@failing
def generation_burst(state_file: str, requests: int = 32, max_tokens: int = 256, prompt_chars: int = 64,
                     timeout_s: float = 60.0, expect_preemptions: bool = False) -> dict[str, Any]:
    """Send ``requests`` streamed generations at once through the endpoint; return their outcomes (see the module
    docstring). Fails with ``expect_preemptions`` when the replicas counted no preemption."""
    for name, value, high in (("requests", requests, _MAX_REQUESTS), ("max_tokens", max_tokens, 1_000_000),
                              ("prompt_chars", prompt_chars, 10_000_000)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ActivityFailed(f"{name}={value!r}: must be an integer from 1 to {high}")
    state = read_state_file(state_file)
    endpoint = state.get("endpoint")
    if not endpoint:
        raise ActivityFailed(f"state file {state_file} names no endpoint")
    before = _preemptions(state)
    path, body = _request(state, "burst " * (prompt_chars // 6) + "b" * (prompt_chars % 6), max_tokens, stream=True)
    at = remember({"name": None}, "generation_burst")
    with ThreadPoolExecutor(max_workers=requests) as pool:
        outcomes = list(pool.map(lambda _: _stream(endpoint, path, body, timeout_s), range(requests)))
    after = _preemptions(read_state_file(state_file))
    comparable = before is not None and after is not None and set(before) == set(after)
    preemptions = sum(after.values()) - sum(before.values()) if comparable else None
    counts = {kind: sum(1 for outcome, _ in outcomes if outcome == kind) for kind in ("complete", "cut", "refused", "failed")}
    ttfts = [ttft for _, ttft in outcomes if ttft is not None]
    result = {"requests": requests, "max_tokens": max_tokens, **counts, "preemptions": preemptions,
              "ttft_p50_ms": round(statistics.median(ttfts), 1) if ttfts else None,
              "duration_s": round(time.time() - at, 3), "time_s": at}
    if expect_preemptions and not preemptions:
        raise ActivityFailed(f"no preemption counted ({_PREEMPTIONS} {'unchanged' if comparable else 'unreadable'}): "
                             f"the burst did not put the KV cache under pressure; outcomes {counts}")
    return result


@failing
def generation_stalls(state_file: str, replica: str = "injected", within_s: float = 1.0) -> dict[str, Any]:
    """Check that one replica generates nothing: a streamed request sent straight to it gets no token within
    ``within_s``; return how long it waited. Fails when a token (or an error answer) comes in time."""
    if isinstance(within_s, bool) or not isinstance(within_s, (int, float)) or not 0 < within_s <= 600:
        raise ActivityFailed(f"within_s={within_s!r}: must be a number of seconds above 0 and at most 600")
    state = read_state_file(state_file)
    row = select(state, replica)[0]
    path, body = _request(state, "are you there?", 1, stream=True)
    started = time.perf_counter()
    outcome, ttft = _stream(row["url"], path, body, float(within_s))
    waited = time.perf_counter() - started
    if ttft is not None or outcome in ("complete", "refused"):
        raise ActivityFailed(f"replica {row['name']} is generating: {outcome} after {waited * 1000:.0f} ms"
                             f"{f' (first token at {ttft:.0f} ms)' if ttft is not None else ''}")
    return {"replica": row["name"], "no_token_within_s": round(waited, 3)}
