"""The OpenAI-compatible API in-process: answers streamed and not, bad requests, metrics, health and fault hooks."""

from __future__ import annotations

import json
import threading
import time

import pytest

from .conftest import TOKEN

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def _post(app, path: str, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.request("POST", path, headers=[("content-type", "application/json"), *(headers or [])], body=raw)


def _events(answer) -> list:
    lines = [line[len("data: "):] for line in answer.body.decode().split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines[-3:]
    return [json.loads(line) for line in lines[:-1]]


def test_streamed_and_unstreamed_answers_agree_and_count_their_tokens(start_app):
    app = start_app()
    for path, text_of in ((COMPLETIONS, lambda c: c["text"]), (CHAT, lambda c: c.get("delta", c.get("message", {})).get("content", ""))):
        request = {"max_tokens": 9, "seed": 5, **({"messages": [{"role": "user", "content": "hi"}]} if path == CHAT else {"prompt": "hi"})}
        whole = _post(app, path, request)
        assert whole.status == 200, whole.body
        answer = json.loads(whole.body)
        streamed = _post(app, path, {**request, "stream": True, "stream_options": {"include_usage": True}})
        assert streamed.status == 200 and streamed.headers["content-type"] == "text/event-stream"
        events = _events(streamed)
        tokens = [e for e in events if e["choices"]]
        assert len(tokens) == 9 and tokens[-1]["choices"][0]["finish_reason"] == "length"
        assert "".join(text_of(e["choices"][0]) for e in tokens) == text_of(answer["choices"][0])
        assert events[-1]["choices"] == [] and events[-1]["usage"] == answer["usage"]
        assert answer["usage"]["completion_tokens"] == 9 and answer["usage"]["prompt_tokens"] > 2


@pytest.mark.parametrize("path, body, status, param", [
    (COMPLETIONS, {"prompt": "x" * 100, "max_tokens": 200}, 400, "max_tokens"),
    (COMPLETIONS, {"prompt": "x" * 300}, 400, "prompt"),
    (CHAT, {"messages": [{"role": "user", "content": "y" * 300}], "max_completion_tokens": 2}, 400, "messages"),
    (CHAT, {"messages": "hello"}, 400, "messages"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
    (COMPLETIONS, {"prompt": "x", "model": "gpt-9"}, 404, "model"),
    (COMPLETIONS, {"prompt": "x", "n": 2}, 400, "n"),
    (COMPLETIONS, {"prompt": "x", "temperature": 7}, 400, "temperature"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": "many"}, 400, "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "stream": "yes"}, 400, "stream"),
    (COMPLETIONS, {"prompt": ["a", "b"]}, 400, "prompt"),
    (COMPLETIONS, {"prompt": "x", "stop": [1]}, 400, "stop"),
    (COMPLETIONS, b"{not json", 400, None),
    (COMPLETIONS, b"[1, 2]", 400, None),
])
def test_a_bad_request_is_a_4xx_naming_the_field_never_a_5xx(start_app, path, body, status, param):
    app = start_app(max_model_len=256, kv_cache_tokens=512)
    answer = _post(app, path, body)
    error = json.loads(answer.body)["error"]
    assert answer.status == status and error["param"] == param, answer.body
    if param:
        assert error["message"].startswith(param) or f"{param}=" in error["message"]
    if param == "max_tokens" and body.get("max_tokens") == 200:
        assert "maximum context length is 256" in error["message"]


def test_any_integer_seed_is_taken_and_repeats_its_answer(start_app):
    app = start_app()
    answers = [json.loads(_post(app, COMPLETIONS, {"prompt": "s", "max_tokens": 6, "seed": seed}).body)["choices"][0]["text"]
               for seed in (-1, -1, 2**63 - 1)]
    assert answers[0] == answers[1] and len(answers[2]) == 6


def test_routes_models_metrics_and_probes(start_app):
    app = start_app()
    models = json.loads(app.request("GET", "/v1/models").body)
    assert [m["id"] for m in models["data"]] == ["reference-llm"]
    assert app.request("GET", "/health").status == 200 and app.request("GET", "/ready").status == 200
    assert json.loads(app.request("GET", "/health/generate").body)["ok"] is True
    assert app.request("GET", "/nowhere").status == 404
    wrong = app.request("GET", COMPLETIONS)
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"
    _post(app, COMPLETIONS, {"prompt": "m", "max_tokens": 3})
    metrics = app.request("GET", "/metrics").body.decode()
    assert 'vllm:generation_tokens_total{model_name="reference-llm"} 4' in metrics  # 3, and the probe's 1
    assert "vllm:kv_cache_usage_perc" in metrics and "vllm:num_requests_waiting" in metrics


def test_a_hang_stalls_generation_while_health_and_readiness_stay_green(start_app):
    app = start_app()
    auth = [("authorization", f"Bearer {TOKEN}")]
    assert _post(app, "/v2/faults/hang", {"duration_s": 30}).status == 401
    assert _post(app, "/v2/faults/hang", {"duration_s": 30}, auth).status == 200
    started = time.monotonic()
    assert app.request("GET", "/health").status == 200 and app.request("GET", "/ready").status == 200
    stalled = app.request("GET", "/health/generate?timeout_s=0.3")
    assert stalled.status == 503 and "not generating" in json.loads(stalled.body)["error"]
    assert time.monotonic() - started < 2
    assert json.loads(app.request("DELETE", "/v2/faults", headers=auth).body) == {"cleared": 1}
    assert _post(app, COMPLETIONS, {"prompt": "back", "max_tokens": 2}).status == 200


def test_a_full_waiting_queue_is_a_503_with_retry_after(start_app):
    app = start_app(max_waiting=1)
    auth = [("authorization", f"Bearer {TOKEN}")]
    _post(app, "/v2/faults/hang", {"duration_s": 30}, auth)  # nothing leaves the queue while generation hangs
    waiting = threading.Thread(target=lambda: _post(app, COMPLETIONS, {"prompt": "a", "max_tokens": 1}), daemon=True)
    waiting.start()
    deadline = time.monotonic() + 5
    while "vllm:num_requests_waiting{model_name=\"reference-llm\"} 1" not in app.request("GET", "/metrics").body.decode():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    refused = _post(app, COMPLETIONS, {"prompt": "b", "max_tokens": 1})
    assert refused.status == 503 and refused.headers["retry-after"] == "1" and "max_waiting=1" in refused.body.decode()
    app.request("DELETE", "/v2/faults", headers=auth)
    waiting.join(10)
    assert not waiting.is_alive()


def test_no_body_a_client_sends_is_answered_5xx(start_app):
    import random

    app = start_app(max_model_len=128, kv_cache_tokens=256)
    rng = random.Random(18)
    values = [None, True, -1, 0, 1, 2**63, 1e308, float("nan"), "", "x" * 300, [], {}, [1, "a"], {"a": 1}, [300], ["a", 1]]
    fields = ["prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
              "stream_options", "stop", "seed", "model", "logprobs"]
    for n in range(150):
        body = {"prompt": "hi"} if n % 2 else {"messages": [{"role": "user", "content": "hi"}]}
        body["max_tokens"] = 2
        for field in rng.sample(fields, rng.randint(1, 4)):
            body[field] = rng.choice(values)
        raw = json.dumps(body, allow_nan=True).encode()
        answer = _post(app, CHAT if n % 3 else COMPLETIONS, raw)
        assert answer.status < 500, (body, answer.body)
        if answer.status >= 400:
            assert json.loads(answer.body)["error"]["message"], body
