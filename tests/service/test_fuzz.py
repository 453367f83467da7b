"""Property-based fuzzing of the service, in-process (no sockets): no input gets a 5xx, every 4xx a JSON error.

Two sources of requests, both driven into the ASGI app directly (`tests.service.inprocess`):

- schemathesis over the service's own OpenAPI document (``/v2/openapi.json``): every operation, with
  schema-valid (positive) and schema-violating (negative) path parameters, headers (the binary
  extension's Inference-Header-Content-Length, Authorization) and bodies, JSON and raw bytes. Two
  passes: the document as served (model names are any string, so most inference requests stop at
  404), and with the model's name, version, input name and datatype pinned, so they reach the tensor
  validation;
- the fuzz benchmark's hostile corpus (`harness.bench.fuzzcorpus`: mistyped fields, overflowing
  shapes, lying binary headers, malformed JSON, bodies past max_body_bytes), from hypothesis-drawn
  seeds, for an FP32 model and an INT64 one.

Deterministic (hypothesis derandomized, no example database) and bounded (a few hundred examples per
test; about half a minute in all). The fault token is a secret the fuzzer cannot send, so no crash or
hang fault can be injected; the fault hooks' own validation has its table in test_faults.py.
"""

from __future__ import annotations

import copy
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402  (schemathesis brings it: it serialises a case into a request)
from schemathesis import GenerationMode  # noqa: E402

from harness.bench.fuzzcorpus import make_request  # noqa: E402
from harness.config import resolve_service_config  # noqa: E402
from harness.service.app import ServiceApp  # noqa: E402
from harness.service.registry import get_signature  # noqa: E402
from harness.service.routes import openapi_document  # noqa: E402

from .inprocess import Answer, InProcessApp  # noqa: E402

MODELS = ("tiny-mlp", "text-encoder")  # an FP32 input and an INT64 one
SCHEMA_EXAMPLES = 20  # per operation and pass, positive and negative mixed (fewer where the space runs out first)
INFER_EXAMPLES = 80  # for the inference operations, where the input validation is
CORPUS_EXAMPLES = 250  # corpus requests per model
OPERATIONS = [(path, method.upper()) for path, item in openapi_document()["paths"].items() for method in item if method != "parameters"]
_SETTINGS = {"derandomize": True, "database": None, "deadline": None, "suppress_health_check": list(HealthCheck)}


@pytest.fixture(scope="module")
def apps(weights_dir: Path) -> Iterator[dict[str, InProcessApp]]:
    """A ready in-process ServiceApp per model, its fault token a secret the fuzzer cannot send."""
    started: dict[str, InProcessApp] = {}
    try:
        for model in MODELS:
            flags = {"model": model, "weights_dir": str(weights_dir), "torch_threads": 1, "max_queue_delay_ms": 1.0,
                     "fault_token": secrets.token_hex(16)}
            started[model] = InProcessApp(ServiceApp(resolve_service_config(flags, env={}))).__enter__()
        deadline = time.monotonic() + 120
        for app in started.values():
            while app.request("GET", "/v2/health/ready").status != 200:
                assert time.monotonic() < deadline, "the in-process service did not turn ready"
                time.sleep(0.05)
        yield started
    finally:
        for app in started.values():
            app.__exit__(None, None, None)


def check_answer(answer: Answer, method: str, described: str) -> None:
    """Fail on a 5xx; fail on a 4xx whose body is not a JSON object with a non-empty string ``error``; 405 needs Allow."""
    described = f"{described} -> {answer.status}: {answer.body[:300]!r}"
    assert answer.status < 500, described
    if answer.status >= 400 and method != "HEAD":
        import json

        payload = json.loads(answer.body)
        assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"], described
    if answer.status == 405:
        assert answer.headers.get("allow"), described


def _pinned(model: str) -> dict[str, Any]:
    # the document with the served model's name, version, input name and datatype pinned
    signature = get_signature(model)
    document = copy.deepcopy(openapi_document())
    pins = {"model_name": [signature.name], "model_version": [signature.version]}
    for item in document["paths"].values():
        for parameter in item.get("parameters", []):
            if parameter["name"] in pins:
                parameter["schema"] = {"type": "string", "enum": pins[parameter["name"]]}
    properties = document["components"]["schemas"]["request_input"]["properties"]
    properties["name"] = {"type": "string", "enum": [spec.name for spec in signature.inputs]}
    properties["datatype"] = {"type": "string", "enum": sorted({spec.datatype for spec in signature.inputs})}
    return document


def _call_case(app: InProcessApp, case: Any) -> Answer:
    # the request schemathesis would send (its own serialisation), delivered as ASGI messages
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    prepared = requests.Request(**kwargs).prepare()
    body = prepared.body or b""
    body = body.encode() if isinstance(body, str) else body
    headers = [(name, value if isinstance(value, str) else value.decode("latin-1")) for name, value in prepared.headers.items()]
    return app.request(prepared.method or "GET", prepared.path_url, headers, body)


def _fuzz_operations(app: InProcessApp, document: dict[str, Any], path: str, method: str) -> None:
    operation = schemathesis.openapi.from_dict(document)[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=INFER_EXAMPLES if path.endswith("/infer") else SCHEMA_EXAMPLES, **_SETTINGS)
    @given(case=strategy)
    def run(case: Any) -> None:
        check_answer(_call_case(app, case), case.method, f"{case.method} {case.formatted_path}")

    run()


def test_the_served_document_is_the_packaged_one(apps: dict[str, InProcessApp]) -> None:
    answer = apps["tiny-mlp"].request("GET", "/v2/openapi.json")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    import json

    assert json.loads(answer.body) == openapi_document()


@pytest.mark.parametrize("path, method", OPERATIONS)
def test_no_request_made_from_the_document_gets_a_5xx_or_a_4xx_without_a_json_error(apps: dict[str, InProcessApp], path: str, method: str) -> None:
    _fuzz_operations(apps["tiny-mlp"], openapi_document(), path, method)


@pytest.mark.parametrize("path, method", [op for op in OPERATIONS if op[0].startswith("/v2/models/")])
@pytest.mark.parametrize("model", MODELS)
def test_no_request_reaching_the_model_gets_a_5xx_or_a_4xx_without_a_json_error(apps: dict[str, InProcessApp], model: str, path: str, method: str) -> None:
    _fuzz_operations(apps[model], _pinned(model), path, method)


@pytest.mark.parametrize("model", MODELS)
def test_no_request_of_the_hostile_corpus_gets_a_5xx_or_a_4xx_without_a_json_error(apps: dict[str, InProcessApp], model: str) -> None:
    app = apps[model]

    @settings(max_examples=CORPUS_EXAMPLES, **_SETTINGS)
    @given(seed=st.integers(0, 2**64 - 1))
    def run(seed: int) -> None:
        request = make_request(random.Random(seed), model)
        answer = app.request(request.method, request.path, list(request.headers), request.payload(), chunked=request.chunked)
        check_answer(answer, request.method, f"{request.form}/{request.kind} {request.method} {request.path[:80]}")

    run()
    assert app.request("GET", "/v2/health/ready").status == 200
