"""The service's ASGI application: Open Inference Protocol v2 routes, metrics and fault hooks.

A plain ASGI callable rather than a framework: the inference path is the hot path of the benchmark,
and a dozen fixed routes need no router. Every error is JSON ``{"error": "..."}`` with 400 (bad
input), 401/403 (fault auth), 404 (unknown model, version, route or fault kind), 405, 413 (body over
``max_body_bytes``), 500 (a failed forward pass) or 503 (not ready, draining, queue full).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson

from harness.config import ServiceConfig
from harness.service import protocol
from harness.service.batcher import QueueFull, ShuttingDown
from harness.service.engine import FAILED, LOADING, InferenceEngine
from harness.service.faults import Fault, FaultError, FaultManager
from harness.service.metrics import CONTENT_TYPE, ServiceMetrics
from harness.service.protocol import ProtocolError, error_body

__all__ = ["ServiceApp", "Reply", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1
_JSON = [(b"content-type", b"application/json")]
_FAULT_BODY_BYTES = 64 * 1024
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class Reply(NamedTuple):
    """An HTTP response, and what to do once it is sent."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    after: Callable[[], None] | None = None


def _json(status: int, payload: Any) -> Reply:
    return Reply(status, orjson.dumps(payload), _JSON)


def _error(status: int, message: str, *extra: tuple[bytes, bytes]) -> Reply:
    return Reply(status, error_body(message), [*_JSON, *extra])


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds max_body_bytes={limit}")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ServiceApp:
    """The ASGI app of one service process; the engine starts with the ASGI lifespan."""

    def __init__(self, config: ServiceConfig, on_event: Callable[[dict[str, Any]], None] = lambda e: None, started_at: float | None = None) -> None:
        self.config = config
        self.faults = FaultManager()
        self.metrics = ServiceMetrics(config.model, config.max_batch_size)
        self.engine = InferenceEngine(config, self.metrics, self.faults, on_event, started_at)
        self.on_event = on_event
        self.signature = self.engine.signature
        self._routes = {
            (): ("GET", self._server_metadata),
            ("health", "live"): ("GET", self._live),
            ("health", "ready"): ("GET", self._ready),
            ("repository", "index"): ("POST", self._repository_index),
        }

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            reply = await self._route(scope, receive)
        except ProtocolError as exc:  # a body over the limit: the rest of it is never read
            reply = _error(exc.status, exc.message, (b"connection", b"close"))
        except ConnectionResetError:
            return
        except Exception as exc:  # a bug must not take the connection down without a JSON answer
            self.on_event({"event": "internal_error", "path": scope["path"], "error": f"{type(exc).__name__}: {exc}"})
            reply = _error(500, f"internal error: {type(exc).__name__}: {exc}")
        headers = [(b"content-length", str(len(reply.body)).encode()), *reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        if reply.after is not None:
            reply.after()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.engine.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.close()
                self.faults.clear()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: dict[str, Any], receive: Receive) -> Reply:
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        if parts == ["metrics"]:
            if method != "GET":
                return _error(405, f"method {method} not allowed on {path}")
            text = self.metrics.render(self.engine.batcher.depth if self.engine.batcher else 0, self.engine.ready, self.faults.counts)
            return Reply(200, text, [(b"content-type", CONTENT_TYPE)])
        if parts[0] != "v2":
            return _error(404, f"no route for {method} {path}")
        rest = parts[1:]
        if rest and rest[0] == "models" and len(rest) >= 2:
            return await self._model_route(method, rest[1], rest[2:], scope, receive)
        if rest and rest[0] == "faults":
            return await self._fault_route(method, rest[1:], scope, receive)
        route = self._routes.get(tuple(p for p in rest if p))
        if route is None:
            return _error(404, f"no route for {method} {path}")
        if method != route[0]:
            return _error(405, f"method {method} not allowed on {path}; use {route[0]}")
        return await route[1](scope, receive)

    async def _server_metadata(self, scope: dict[str, Any], receive: Receive) -> Reply:
        return _json(200, protocol.server_metadata())

    async def _live(self, scope: dict[str, Any], receive: Receive) -> Reply:
        delay_s = self.faults.probe_delay_s("live")
        if delay_s:
            await asyncio.sleep(delay_s)
        engine = self.engine
        if engine.phase == FAILED or (engine.phase == LOADING and not self.config.live_during_load):
            return _json(503, {"live": False, "error": engine.not_ready_reason()})
        return _json(200, {"live": True})

    async def _ready(self, scope: dict[str, Any], receive: Receive) -> Reply:
        delay_s = self.faults.probe_delay_s("ready")
        if delay_s:
            await asyncio.sleep(delay_s)
        if self.engine.ready:
            return _json(200, {"ready": True})
        return _json(503, {"ready": False, "error": self.engine.not_ready_reason()})

    async def _repository_index(self, scope: dict[str, Any], receive: Receive) -> Reply:
        body = await _read_body(receive, _FAULT_BODY_BYTES)
        try:
            request = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return _error(400, f"malformed JSON: {exc}")
        if not isinstance(request, dict) or not isinstance(request.get("ready", False), bool):
            return _error(400, "body must be an object with an optional boolean 'ready'")
        entry = {"name": self.signature.name, "version": self.signature.version, "state": "READY" if self.engine.ready else "UNAVAILABLE"}
        if not self.engine.ready:
            entry["reason"] = self.engine.not_ready_reason()
        if request.get("ready") and not self.engine.ready:
            return _json(200, [])
        return _json(200, [entry])

    async def _model_route(self, method: str, name: str, tail: list[str], scope: dict[str, Any], receive: Receive) -> Reply:
        if tail[:1] == ["versions"]:
            if len(tail) < 2:
                return _error(404, f"no route for {method} {scope['path']}")
            if tail[1] != self.signature.version:
                if name == self.signature.name:
                    return _error(404, f"unknown version {tail[1]!r} of model {name!r}; available: {self.signature.version}")
            tail = tail[2:]
        if tail == ["infer"]:
            if method != "POST":
                return _error(405, f"method {method} not allowed on {scope['path']}; use POST")
            return await self._infer(name, scope, receive)
        if name != self.signature.name:
            return _error(404, f"unknown model {name!r}; this server serves {self.signature.name!r}")
        if tail not in ([], ["ready"]):
            return _error(404, f"no route for {method} {scope['path']}")
        if method != "GET":
            return _error(405, f"method {method} not allowed on {scope['path']}; use GET")
        if tail == ["ready"]:
            if self.engine.ready:
                return _json(200, {"name": name, "ready": True})
            return _json(503, {"name": name, "ready": False, "error": self.engine.not_ready_reason()})
        return _json(200, protocol.model_metadata(self.signature))

    async def _infer(self, name: str, scope: dict[str, Any], receive: Receive) -> Reply:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            result = await self._infer_inner(name, scope, receive)
        except ProtocolError as exc:
            result = _error(exc.status, exc.message, *(((b"connection", b"close"),) if exc.status == 413 else ()))
        finally:
            metrics.in_flight -= 1
        metrics.observe_request(name if name == self.signature.name else "unknown", result[0], time.perf_counter() - started)
        return result

    async def _infer_inner(self, name: str, scope: dict[str, Any], receive: Receive) -> Reply:
        limit = self.config.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ProtocolError(413, f"request body of {length} bytes exceeds max_body_bytes={limit}")
        body = await _read_body(receive, limit)
        if name != self.signature.name:
            return _error(404, f"unknown model {name!r}; this server serves {self.signature.name!r}")
        engine = self.engine
        if not engine.ready:
            return _error(503, engine.not_ready_reason(), (b"retry-after", str(RETRY_AFTER_S).encode()))
        request = protocol.parse_infer_request(body, self.signature, self.config.max_batch_size, _header(scope, protocol.HEADER_LENGTH.encode()))
        assert engine.batcher is not None
        try:
            future = engine.batcher.submit(request.arrays, request.batch)
        except QueueFull as exc:
            return _error(503, str(exc), (b"retry-after", str(RETRY_AFTER_S).encode()))
        except ShuttingDown as exc:
            return _error(503, str(exc))
        try:
            outputs = await future
        except ShuttingDown as exc:
            return _error(503, str(exc))
        except Exception as exc:  # a failed forward pass: the request fails, the service stays up
            return _error(500, f"inference failed: {type(exc).__name__}: {exc}")
        body, headers = protocol.encode_infer_response(name, self.signature.version, request, outputs, self.signature)
        return Reply(200, body, headers)

    # ---- fault hooks ---------------------------------------------------------------------------

    def _authorize(self, scope: dict[str, Any]) -> Reply | None:
        token = self.config.fault_token
        if not token:
            return _error(403, "fault hooks are disabled: no token configured")
        header = _header(scope, b"authorization")
        if header is None:
            return _error(401, "missing 'Authorization: Bearer <token>' header", (b"www-authenticate", b"Bearer"))
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _error(401, "malformed Authorization header; expected 'Bearer <token>'", (b"www-authenticate", b"Bearer"))
        if not hmac.compare_digest(value.strip().encode(), token.encode()):
            return _error(403, "wrong fault token")
        return None

    async def _fault_route(self, method: str, tail: list[str], scope: dict[str, Any], receive: Receive) -> Reply:
        if len(tail) > 1 or (tail and method != "POST") or (not tail and method not in ("GET", "DELETE")):
            allowed = "POST" if tail else "GET, DELETE"
            return _error(405 if len(tail) <= 1 else 404, f"method {method} not allowed on {scope['path']}; use {allowed}")
        body = await _read_body(receive, _FAULT_BODY_BYTES)
        refused = self._authorize(scope)
        if refused is not None:
            return refused
        if not tail:
            if method == "GET":
                return _json(200, {"faults": [f.describe() for f in self.faults.active()]})
            return _json(200, {"cleared": self.faults.clear()})
        try:
            params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return _error(400, f"malformed JSON: {exc}")
        try:
            fault = self.faults.inject(tail[0], params)
        except FaultError as exc:
            return _error(exc.status, str(exc))
        reply = {**fault.describe()}
        self.on_event({"event": "fault", **reply})
        if fault.kind in ("hang", "crash"):
            return Reply(200, orjson.dumps(reply), _JSON, after=lambda: self._act(fault))
        return _json(200, reply)

    def _act(self, fault: Fault) -> None:
        # hang and crash act only once their reply is on the wire, so the caller learns they took effect
        loop = asyncio.get_running_loop()
        if fault.kind == "hang":
            loop.call_later(0.02, time.sleep, fault.params["duration_s"])  # blocks the whole event loop
        else:
            fault.timer = loop.call_later(fault.params["delay_s"], self._crash, fault.params["exit_code"])

    def _crash(self, exit_code: int) -> None:
        self.on_event({"event": "crash", "exit_code": exit_code})
        os._exit(exit_code)
