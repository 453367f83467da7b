"""The generative service's ASGI application: OpenAI-compatible routes, health, metrics and fault hooks.

Routes (anything else: 404; a known path with another method: 405 naming the allowed one):

  GET  /v1/models                  the one model served
  POST /v1/completions             a prompt; ``"stream": true`` for Server-Sent Events
  POST /v1/chat/completions        chat ``messages``; the same streaming
  GET  /health                     liveness: 200 while the process serves HTTP (also while the engine is wedged:
                                   that is the point of the healthy-but-broken fault)
  GET  /ready                      readiness: 200 once the model is loaded and warmed, 503 before and while draining
  GET  /health/generate            an inference-level check: 200 when one token comes out of the engine within
                                   ``timeout_s`` (query; default 5), 503 otherwise; it queues as any request does
  GET  /metrics                    Prometheus text (`harness.llmservice.metrics`)
  GET|DELETE /v2/faults, POST /v2/faults/{kind}   the harness's fault hooks (bearer token), as the reference
                                   service's (`harness.service.faults`); ``hang`` stalls generation only

Bad requests are 400 (404 for another model) with OpenAI's error object; a full waiting queue and a
draining server 503 with ``Retry-After``; nothing a client sends is answered 5xx otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson

from harness.faultparams import FaultError
from harness.llmservice import MODEL_NAME, openai
from harness.llmservice.engine import Draining, EngineSettings, LLMEngine, QueueFull, Sampling, Token
from harness.llmservice.metrics import CONTENT_TYPE, LLMMetrics
from harness.llmservice.tokenizer import encode
from harness.service.faults import FaultManager

__all__ = ["LLMApp", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 4 * 2**20
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_ROUTES = {"/v1/models": ("GET",), "/v1/completions": ("POST",), "/v1/chat/completions": ("POST",), "/health": ("GET",),
           "/ready": ("GET",), "/health/generate": ("GET",), "/metrics": ("GET",), "/v2/faults": ("GET", "DELETE")}
_GENERATE_PROBE_S = 5.0
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


class LLMApp:
    """One server process's app; the model loads (and the engine starts) with the ASGI lifespan."""

    def __init__(self, settings: EngineSettings, *, seed: int, weights_dir: str, fault_token: str | None,
                 on_event: Callable[[dict[str, Any]], None] = lambda event: None, torch_threads: int | None = None) -> None:
        self.torch_threads = torch_threads
        self.settings, self.seed, self.weights_dir, self.fault_token = settings, seed, weights_dir, fault_token
        self.on_event = on_event
        self.metrics = LLMMetrics(MODEL_NAME)
        self.faults = FaultManager()
        self.engine: LLMEngine | None = None
        self.load_error: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._created = int(time.time())

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.engine.draining

    # ---- lifespan --------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._tasks.append(asyncio.ensure_future(self._load()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.engine is not None:
                    await asyncio.to_thread(self.engine.close)
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self.faults.clear()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _load_model(self) -> tuple[Any, dict[str, Any]]:
        # torch is imported here, in a thread, after the port listens: most of a replica's start, with /health answering
        import torch

        from harness.llmservice.model import load_decoder

        _fixed_mmap_threshold()

        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        return load_decoder(self.seed, self.weights_dir)

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            model, manifest = await asyncio.to_thread(self._load_model)
            engine = LLMEngine(model, self.settings, self.metrics, self.faults)
            await asyncio.to_thread(engine.warm_up, encode("warm-up"))
        except Exception as exc:  # bad weights, a cache too large for memory: said, and readiness stays 503
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.on_event({"event": "load_failed", "error": self.load_error})
            return
        self.engine = engine
        engine.start(asyncio.get_running_loop())
        self.on_event({"event": "ready", "model": MODEL_NAME, "load_s": round(time.monotonic() - started, 3),
                       "sha256": manifest["sha256"], "kv_cache_mb": round(engine.cache.nbytes / 2**20, 1)})

    # ---- dispatch --------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        kind = path[len("/v2/faults/"):] if path.startswith("/v2/faults/") else None
        allowed = ("POST",) if kind else _ROUTES.get(path)
        if allowed is None:
            await self._reply(send, 404, openai.error_body(f"no route for {method} {path[:100]}", status=404), path)
            return
        if method not in allowed:
            await self._reply(send, 405, openai.error_body(f"method {method} not allowed on {path}; use {', '.join(allowed)}",
                                                           status=405), path, [(b"allow", ", ".join(allowed).encode())])
            return
        try:
            body = await _read_body(receive)
        except ValueError as exc:
            await self._reply(send, 413, openai.error_body(str(exc), status=413), path, [(b"connection", b"close")])
            return
        except ConnectionResetError:
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if path in ("/v1/completions", "/v1/chat/completions"):
                await self._generate(tracked, receive, body, chat=path == "/v1/chat/completions")
            elif kind is not None or path == "/v2/faults":
                await self._fault_hook(scope, tracked, body, kind)
            else:
                await self._simple(scope, tracked, receive, path)
        except Exception as exc:  # a bug: said in JSON (and as an event), never an HTML page or a dropped connection
            self.on_event({"event": "internal_error", "path": path, "error": f"{type(exc).__name__}: {exc}"})
            if not started:
                await self._reply(send, 500, openai.error_body(f"internal error: {type(exc).__name__}: {exc}", status=500), path)

    async def _reply(self, send: Send, status: int, body: bytes, route: str,
                     headers: list[tuple[bytes, bytes]] | None = None, content_type: list | None = None) -> None:
        self.metrics.http[(route if status != 404 else "unknown", status)] += 1
        head = [(b"content-length", str(len(body)).encode()), *(content_type or _JSON), *(headers or [])]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    async def _simple(self, scope: dict[str, Any], send: Send, receive: Receive, path: str) -> None:
        if path == "/metrics":
            engine = self.engine
            scheduler = engine.scheduler if engine is not None else None
            text = self.metrics.render(len(scheduler.running) if scheduler else 0, len(scheduler.waiting) if scheduler else 0,
                                       scheduler.pool.usage if scheduler else 0.0,
                                       {"max_model_len": self.settings.max_model_len,
                                        "kv_cache_tokens": scheduler.capacity_tokens if scheduler else 0},
                                       self.faults.counts)
            await self._reply(send, 200, text, path, content_type=[(b"content-type", CONTENT_TYPE)])
        elif path == "/v1/models":
            await self._reply(send, 200, openai.models_body(MODEL_NAME, self.settings.max_model_len, self._created), path)
        elif path == "/health":
            await asyncio.sleep(self.faults.probe_delay_s("live"))
            await self._reply(send, 200, b'{"live":true}', path)
        elif path == "/ready":
            await asyncio.sleep(self.faults.probe_delay_s("ready"))
            if self.ready:
                await self._reply(send, 200, b'{"ready":true}', path)
            else:
                await self._reply(send, 503, orjson.dumps({"ready": False, "error": self._not_ready()}), path)
        else:
            await self._generate_probe(scope, send, receive, path)

    def _not_ready(self) -> str:
        if self.load_error:
            return f"model failed to load: {self.load_error}"
        return "draining" if self.engine is not None else "loading the model"

    async def _generate_probe(self, scope: dict[str, Any], send: Send, receive: Receive, path: str) -> None:
        await asyncio.sleep(self.faults.probe_delay_s("ready"))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            timeout_s = float(query.get("timeout_s", [_GENERATE_PROBE_S])[0])
            assert 0 < timeout_s <= 600
        except (ValueError, AssertionError):
            await self._reply(send, 400, openai.error_body(f"timeout_s={query.get('timeout_s')}: must be a number of "
                                                           f"seconds above 0 and at most 600", "timeout_s"), path)
            return
        if not self.ready:
            await self._reply(send, 503, orjson.dumps({"ok": False, "error": self._not_ready()}), path)
            return
        started = time.monotonic()
        sampling = Sampling(0.0, 1.0, np.random.default_rng(0))
        assert self.engine is not None
        try:
            seq = self.engine.submit(encode("ping"), 1, sampling)
        except (QueueFull, Draining) as exc:
            await self._reply(send, 503, orjson.dumps({"ok": False, "error": str(exc)}), path)
            return
        try:
            async with asyncio.timeout(timeout_s):
                token = await sampling.next()
        except TimeoutError:
            self.engine.abort(seq)
            await self._reply(send, 503, orjson.dumps({"ok": False, "error": f"no token within {timeout_s:g} s: "
                                                       f"the engine is not generating"}), path)
            return
        ok = token.error is None
        await self._reply(send, 200 if ok else 503, orjson.dumps(
            {"ok": ok, "generated_in_s": round(time.monotonic() - started, 4), **({"error": token.error} if not ok else {})}),
            path)

    # ---- generation ------------------------------------------------------------------------------

    async def _generate(self, send: Send, receive: Receive, body: bytes, *, chat: bool) -> None:
        route = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            request = openai.parse_request(body, chat=chat, served_model=MODEL_NAME, max_model_len=self.settings.max_model_len)
        except openai.RequestError as exc:
            await self._reply(send, exc.status, openai.error_body(exc.message, exc.param, exc.status), route)
            return
        if not self.ready:
            await self._reply(send, 503, openai.error_body(f"not ready: {self._not_ready()}", status=503), route,
                              [(b"retry-after", b"1")])
            return
        # any integer seeds (OpenAI's is int64; numpy's generator takes non-negative ones)
        seed = request.seed % 2**64 if request.seed is not None else int.from_bytes(os.urandom(8), "little")
        sampling = Sampling(request.temperature, request.top_p, np.random.default_rng(seed), request.stop)
        assert self.engine is not None
        try:
            seq = self.engine.submit(request.prompt_ids, request.max_tokens, sampling)
        except (QueueFull, Draining) as exc:
            await self._reply(send, 503, openai.error_body(str(exc), status=503), route, [(b"retry-after", b"1")])
            return
        watcher = asyncio.ensure_future(_disconnected(receive, sampling))
        try:
            if request.stream:
                await self._stream(send, request, sampling, route)
            else:
                await self._whole(send, request, sampling, route)
        finally:
            watcher.cancel()
            self.engine.abort(seq)  # a client gone mid-answer frees its KV blocks at once (no-op once finished)

    async def _whole(self, send: Send, request: openai.GenerateRequest, sampling: Sampling, route: str) -> None:
        count = 0
        while True:
            token = await sampling.next()
            if token is None:
                return
            if token.error is not None:
                await self._reply(send, 500, openai.error_body(token.error, status=500), route)
                return
            count += 1
            if token.finish_reason is not None:
                body = openai.completion_body(request, sampling.text, token.finish_reason, count)
                await self._reply(send, 200, body, route)
                return

    async def _stream(self, send: Send, request: openai.GenerateRequest, sampling: Sampling, route: str) -> None:
        self.metrics.http[(route, 200)] += 1
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        count = 0
        while True:
            token = await sampling.next()
            if token is None:
                return
            if token.error is not None:  # the stream ends without [DONE]: the client sees a cut answer
                await send({"type": "http.response.body", "body": b"data: " + openai.error_body(token.error, status=500)
                            + b"\n\n", "more_body": False})
                return
            count += 1
            chunk = openai.stream_chunk(request, token.text, token.finish_reason, first=count == 1)
            if token.finish_reason is None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            tail = openai.usage_chunk(request, count) if request.include_usage else b""
            await send({"type": "http.response.body", "body": chunk + tail + b"data: [DONE]\n\n", "more_body": False})
            return

    # ---- fault hooks -----------------------------------------------------------------------------

    def _refused(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        if not self.fault_token:
            return 403, "fault hooks are disabled: no token configured (HARNESS_FAULT_TOKEN)"
        scheme, _, value = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return 401, "missing or malformed 'Authorization: Bearer <token>' header"
        if not hmac.compare_digest(value.strip().encode(), self.fault_token.encode()):
            return 403, "wrong fault token"
        return None

    async def _fault_hook(self, scope: dict[str, Any], send: Send, body: bytes, kind: str | None) -> None:
        refused = self._refused(scope)
        if refused is not None:
            await self._reply(send, refused[0], orjson.dumps({"error": refused[1]}), "/v2/faults")
            return
        if kind is None:
            if scope["method"] == "GET":
                await self._reply(send, 200, orjson.dumps({"faults": [f.describe() for f in self.faults.active()]}), "/v2/faults")
            else:
                await self._reply(send, 200, orjson.dumps({"cleared": self.faults.clear()}), "/v2/faults")
            return
        try:
            params = orjson.loads(body) if body.strip() else {}
            fault = self.faults.inject(kind, params)
        except orjson.JSONDecodeError as exc:
            await self._reply(send, 400, orjson.dumps({"error": f"malformed JSON: {exc}"}), "/v2/faults")
            return
        except FaultError as exc:
            await self._reply(send, exc.status, orjson.dumps({"error": str(exc)}), "/v2/faults")
            return
        self.on_event({"event": "fault", **fault.describe()})
        await self._reply(send, 200, orjson.dumps(fault.describe()), "/v2/faults")
        if kind == "crash":
            loop = asyncio.get_running_loop()
            fault.timer = loop.call_later(fault.params["delay_s"], self._crash, fault.params["exit_code"])

    def _crash(self, exit_code: int) -> None:
        self.on_event({"event": "crash", "exit_code": exit_code})
        os._exit(exit_code)


def _fixed_mmap_threshold() -> None:
    # glibc raises its mmap threshold each time a large block is freed, after which the step's tensors (their
    # sizes change with the batch) come from a heap it keeps: the resident set would climb for the first
    # minute of load and trip the memory-growth alert. A fixed threshold gives every large block back at once.
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to fix
        pass


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ValueError(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _disconnected(receive: Receive, sampling: Sampling) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sampling.hang_up()
