"""The route table, the OpenAPI document and the app agree; wrong methods get 405 with Allow, in JSON.

What uvicorn answers before the app sees a request: its HTTP parser (httptools) refuses a request line
it cannot parse, a method it does not know (``FOO``: llhttp knows a fixed list of methods) and broken
framing (a non-numeric Content-Length). The app never sees those, so no route or handler can answer
them; `harness.service.wire` replaces uvicorn's plain-text ``400 Invalid HTTP request received.`` with
JSON: 501 for an unknown method, 400 for the rest. With h11 (when httptools is absent) any method token
reaches the app and gets its 405 with ``Allow``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from harness.service.routes import OPENAPI_PATH, ROUTES, match, openapi_document

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
_EXAMPLE = {"model_name": "tiny-mlp", "model_version": "1", "kind": "probe-delay"}


def _concrete(template: str) -> str:
    for name, value in _EXAMPLE.items():
        template = template.replace("{" + name + "}", value)
    return template


def _documented() -> dict[str, set[str]]:
    return {path: {m.upper() for m in item if m != "parameters"} for path, item in openapi_document()["paths"].items()}


def test_every_routed_path_and_method_is_documented_and_every_documented_one_is_routed() -> None:
    routed = {route.template: set(route.methods) for route in ROUTES}
    assert routed == _documented()


def test_the_document_is_openapi_3_with_our_extensions_marked() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.") and "open_inference_rest.yaml" in document["info"]["description"]
    extensions = {path for path, item in document["paths"].items()
                  if any(isinstance(op, dict) and "x-extension" in op for op in item.values())}
    assert extensions == {"/metrics", OPENAPI_PATH, "/v2/repository/index", "/v2/faults", "/v2/faults/{kind}"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            tag = operation["tags"][0]
            assert tag.startswith("Extension") == (path in extensions), (path, method, tag)
            for status, response in operation["responses"].items():
                if int(status) >= 400:  # every error answer is documented with its JSON body
                    assert "application/json" in response["content"], (path, method, status)


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.template)
def test_every_documented_operation_is_served_and_other_methods_get_405_with_allow(service: Any, route: Any) -> None:
    url = service.base_url + _concrete(route.template)
    headers = {"authorization": "Bearer test-token"}
    for method in _METHODS:
        if route.template == "/v2/faults/{kind}" and method == "POST":
            response = httpx.post(url, json={"probe": "ready", "delay_s": 0, "duration_s": 1}, headers=headers)
        else:
            response = httpx.request(method, url, headers=headers, content=b"{}" if method == "POST" else None)
        if method in route.methods:
            assert response.status_code not in (404, 405), (method, url, response.text)
        else:
            assert response.status_code == 405, (method, url, response.status_code)
            assert response.headers["allow"] == ", ".join(route.methods)
            if method != "HEAD":
                assert f"use {', '.join(route.methods)}" in response.json()["error"]


@pytest.mark.parametrize("path", ["/v2/", "//v2//health//live/", "/v2/models/tiny-mlp/versions/1/ready/"])
def test_empty_path_segments_are_ignored(path: str) -> None:
    assert match(path) is not None


def _raw(service: Any, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    "request_bytes, status, message",
    [
        (b"FOO /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n", 501, "method not implemented"),
        (b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n", 400, "invalid HTTP request"),
        (b"GET /v2 HTTP/1.1\r\nno colon in this header\r\n\r\n", 400, "invalid HTTP request"),
        (b"NOT HTTP AT ALL\r\n\r\n", 501, "method not implemented"),
    ],
)
def test_what_the_http_parser_refuses_is_answered_in_json(service: Any, request_bytes: bytes, status: int, message: str) -> None:
    code, headers, body = _raw(service, request_bytes)
    assert code == status and headers["content-type"] == "application/json"
    assert message in json.loads(body)["error"]
    assert httpx.get(service.base_url + "/v2/health/ready").status_code == 200  # and the service goes on
