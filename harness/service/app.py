"""The service's ASGI application: Open Inference Protocol v2 routes, metrics and fault hooks.

A plain ASGI callable rather than a framework: the inference path is the hot path of the benchmark,
and a dozen fixed routes (`harness.service.routes`) need no router. Every error is JSON
``{"error": "..."}`` naming the problem and the field: 400 (bad input), 401/403 (fault auth), 404
(unknown model, version, route or fault kind), 405 (with ``Allow``), 413 (body over
``max_body_bytes``), 500 (a failed forward pass: never caused by input) or 503 (not ready,
draining, queue full, cut off by the end of the shutdown grace period).
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
from harness.faultparams import MAX_DURATION_S, FaultError
from harness.service import protocol, routes
from harness.service.batcher import QueueFull, ShuttingDown
from harness.service.engine import FAILED, LOADING, InferenceEngine
from harness.service.faults import Fault, FaultManager
from harness.service.metrics import CONTENT_TYPE, ServiceMetrics
from harness.service.protocol import ProtocolError, error_body, show_value as _show

__all__ = ["ServiceApp", "Reply", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1
_JSON = [(b"content-type", b"application/json")]
_FAULT_BODY_BYTES = 64 * 1024
_DISCARD_BYTES = 64 * 2**20  # of a refused body, read and dropped at most this much before the 413 ...
_DISCARD_S = 2.0  # ... within this long; past either, the 413 closes the connection
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


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class BodyTooLarge(ProtocolError):
    """A body over its limit (413); ``drained`` says whether the rest of it was read, so the connection can stay."""

    def __init__(self, message: str, drained: bool) -> None:
        super().__init__(413, message)
        self.drained = drained

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """Return the reply's extra headers: close the connection unless the body was read to its end."""
        return () if self.drained else ((b"connection", b"close"),)


async def _discard(receive: Receive) -> bool:
    # read and drop the rest of a refused body (bounded in bytes and time), so that a client still sending gets
    # the 413 instead of a reset connection (closing with unread data makes the kernel send RST)
    dropped = 0
    try:
        async with asyncio.timeout(_DISCARD_S):
            while dropped <= _DISCARD_BYTES:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        pass
    return False


async def _read_body(receive: Receive, limit: int, field: str = "max_body_bytes") -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            chunks.clear()
            raise BodyTooLarge(f"request body exceeds {field}={limit}", drained=not more or await _discard(receive))
        chunks.append(chunk)
        if not more:
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
        self._handlers: dict[str, Callable[..., Awaitable[Reply]]] = {
            "metrics": self._metrics, "server_metadata": self._server_metadata, "live": self._live, "ready": self._ready,
            "openapi": self._openapi, "repository_index": self._repository_index, "model_metadata": self._model_metadata,
            "model_ready": self._model_ready, "infer": self._infer, "faults": self._faults, "inject_fault": self._inject_fault,
        }

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            reply = await self._route(scope, receive)
        except BodyTooLarge as exc:
            reply = _error(exc.status, exc.message, *exc.headers())
        except ConnectionResetError:
            return
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its shutdown timeout ends: they get a JSON 503, not
            # uvicorn's plain-text 500 (the batcher's cut-off at the end of the grace period answers most before)
            reply = _error(503, "service shutting down: request cut off at the end of the grace period", (b"connection", b"close"))
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
                self._start_faults()
                await self.engine.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.close()
                self.faults.clear()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: dict[str, Any], receive: Receive) -> Reply:
        method, path = scope["method"], scope["path"]
        found = routes.match(path)
        if found is None:
            return _error(404, f"no route for {_cut(method)} {_cut(path)}")
        route, params = found
        if method not in route.methods:
            allowed = ", ".join(route.methods)
            return _error(405, f"method {_cut(method)} not allowed on {_cut(path)}; use {allowed}", (b"allow", allowed.encode()))
        return await self._handlers[route.handler](scope, receive, params)

    async def _metrics(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        text = self.metrics.render(self.engine.batcher.depth if self.engine.batcher else 0, self.engine.ready, self.faults.counts)
        return Reply(200, text, [(b"content-type", CONTENT_TYPE)])

    async def _openapi(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        return Reply(200, routes.openapi_bytes(), _JSON)

    async def _server_metadata(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        return _json(200, protocol.server_metadata())

    async def _live(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        delay_s = self.faults.probe_delay_s("live")
        if delay_s:
            await asyncio.sleep(delay_s)
        engine = self.engine
        if engine.phase == FAILED or (engine.phase == LOADING and not self.config.live_during_load):
            return _json(503, {"live": False, "error": engine.not_ready_reason()})
        return _json(200, {"live": True})

    async def _ready(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        delay_s = self.faults.probe_delay_s("ready")
        if delay_s:
            await asyncio.sleep(delay_s)
        if self.engine.ready:
            return _json(200, {"ready": True})
        return _json(503, {"ready": False, "error": self.engine.not_ready_reason()})

    async def _repository_index(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        body = await _read_body(receive, _FAULT_BODY_BYTES, "the repository-index body limit")
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

    def _unknown(self, params: dict[str, str]) -> Reply | None:
        name, version = params["model_name"], params.get("model_version")
        if name != self.signature.name:
            return _error(404, f"unknown model {_show(name)}; this server serves {self.signature.name!r}")
        if version is not None and version != self.signature.version:
            return _error(404, f"unknown version {_show(version)} of model {name!r}; available: {self.signature.version}")
        return None

    async def _model_metadata(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        return self._unknown(params) or _json(200, protocol.model_metadata(self.signature))

    async def _model_ready(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        unknown = self._unknown(params)
        if unknown is not None:
            return unknown
        name = self.signature.name
        if self.engine.ready:
            return _json(200, {"name": name, "ready": True})
        return _json(503, {"name": name, "ready": False, "error": self.engine.not_ready_reason()})

    async def _infer(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        name = params["model_name"]
        try:
            result = await self._infer_inner(params, scope, receive)
        except BodyTooLarge as exc:
            result = _error(exc.status, exc.message, *exc.headers())
        except ProtocolError as exc:
            result = _error(exc.status, exc.message)
        finally:
            metrics.in_flight -= 1
        metrics.observe_request(name if name == self.signature.name else "unknown", result[0], time.perf_counter() - started)
        return result

    async def _infer_inner(self, params: dict[str, str], scope: dict[str, Any], receive: Receive) -> Reply:
        limit = self.config.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            message = f"request body of {length} bytes exceeds max_body_bytes={limit}"
            # a client that waits for "100 Continue" sends nothing more: nothing to drain, but the framing is off
            waits = (_header(scope, b"expect") or "").lower() == "100-continue"
            raise BodyTooLarge(message, drained=not waits and await _discard(receive))
        body = await _read_body(receive, limit)
        unknown = self._unknown(params)
        if unknown is not None:
            return unknown
        name = params["model_name"]
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

    async def _faults(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        await _read_body(receive, _FAULT_BODY_BYTES, "the fault-hook body limit")
        refused = self._authorize(scope)
        if refused is not None:
            return refused
        if scope["method"] == "GET":
            return _json(200, {"faults": [f.describe() for f in self.faults.active()]})
        return _json(200, {"cleared": self.faults.clear()})

    async def _inject_fault(self, scope: dict[str, Any], receive: Receive, params: dict[str, str]) -> Reply:
        body = await _read_body(receive, _FAULT_BODY_BYTES, "the fault-hook body limit")
        refused = self._authorize(scope)
        if refused is not None:
            return refused
        try:
            fault_params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            return _error(400, f"malformed JSON: {exc}")
        try:
            fault = self.faults.inject(params["kind"], fault_params)
        except FaultError as exc:
            return _error(exc.status, str(exc))
        reply = {**fault.describe()}
        self.on_event({"event": "fault", **reply})
        if fault.kind in ("hang", "crash"):
            return Reply(200, orjson.dumps(reply), _JSON, after=lambda: self._act(fault))
        return _json(200, reply)

    def _start_faults(self) -> None:
        """Activate the config's start faults (a deliberately broken build) for as long as the process may run."""
        for start in self.config.start_faults:
            params = dict(start.params) if start.kind == "crash" else {**start.params, "duration_s": MAX_DURATION_S}
            fault = self.faults.inject(start.kind, params)
            self.on_event({"event": "fault", "start": True, **fault.describe()})
            if fault.kind == "crash":
                self._act(fault)

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
