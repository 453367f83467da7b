"""A tiny OpenAI-compatible streaming server for the protocol tests: stdlib asyncio, in a thread of the test.

`StreamingServer` answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` (HTTP/1.1,
keep-alive). Streamed (``"stream": true``): a role-only chunk at once (no text: not a token), then
``tokens`` text chunks (fewer when ``max_tokens`` asks for fewer), the first after ``ttft_s`` and each next one ``itl_s`` after the one before, a
chunk with ``finish_reason`` "length", a usage chunk (``completion_tokens``) when the request asked for
it, ``data: [DONE]`` and the terminating chunk. Every ``cut_every``-th request (1-based) is cut: the
connection closes after half of the tokens, mid-response. Not streamed: the whole answer after
``ttft_s + (tokens - 1) * itl_s``. ``GET /health`` is 200 (a readiness path); any other path is a 404.
"""

from __future__ import annotations

import asyncio
import json
import threading

__all__ = ["StreamingServer"]


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(payload: object) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"


class StreamingServer:
    """Start with `start` (returns self once listening at ``url``), stop with `stop`; a context manager."""

    def __init__(self, *, tokens: int = 6, ttft_s: float = 0.06, itl_s: float = 0.02, cut_every: int = 0) -> None:
        self.tokens, self.ttft_s, self.itl_s, self.cut_every = tokens, ttft_s, itl_s, cut_every
        self.count = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> "StreamingServer":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> "StreamingServer":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return False when the connection is to close (a cut stream)."""
        if method == "GET" and path == "/health":  # a readiness path, for a spec's endpoint target
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
            await writer.drain()
            return True
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
            await writer.drain()
            return True
        self.count += 1
        cut = self.cut_every > 0 and self.count % self.cut_every == 0
        request = json.loads(body)
        chat = path.endswith("chat/completions")
        tokens = min(self.tokens, int(request.get("max_tokens") or self.tokens))
        if not request.get("stream"):
            await asyncio.sleep(self.ttft_s + (tokens - 1) * self.itl_s)
            text = " ".join(f"tok{k}" for k in range(tokens))
            choice = {"index": 0, "finish_reason": "length",
                      **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
            data = json.dumps({"choices": [choice], "usage": {"completion_tokens": tokens}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(data)).encode() + b"\r\n\r\n" + data)
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        def choice(text: str | None, finish: str | None = None) -> dict:
            if chat:
                delta = {"role": "assistant", "content": ""} if text is None else ({"content": text} if text else {})
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        writer.write(_chunk(_event({"object": "chunk", "choices": [choice(None)]})))
        await writer.drain()
        await asyncio.sleep(self.ttft_s)
        for k in range(tokens):
            if k:
                await asyncio.sleep(self.itl_s)
            writer.write(_chunk(_event({"object": "chunk", "choices": [choice(f"tok{k} ")]})))
            await writer.drain()
            if cut and k == tokens // 2 - 1:
                return False  # closed mid-response: no finish_reason, no [DONE], no terminating chunk
        writer.write(_chunk(_event({"object": "chunk", "choices": [choice("", "length")]})))
        if (request.get("stream_options") or {}).get("include_usage"):
            writer.write(_chunk(_event({"object": "chunk", "choices": [], "usage": {"completion_tokens": tokens}})))
        writer.write(_chunk(_event(b"[DONE]")) + b"0\r\n\r\n")
        await writer.drain()
        return True
