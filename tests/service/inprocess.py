"""The service's ASGI app driven in-process: its own event loop thread, its lifespan, requests as ASGI messages.

No sockets and no HTTP parser: a request goes to the app as the ASGI scope and body messages a server
would make of it (the body in 64 KiB messages), and the answer comes back as (status, headers, body).
For fuzzing at thousands of requests a second without a server in the way.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["InProcessApp", "Answer"]

_PIECE = 64 * 1024


class Answer:
    """One response: ``status``, ``headers`` (lower-case names) and ``body`` bytes."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class InProcessApp:
    """An ASGI app with its lifespan running on a private event loop; a context manager."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asgi-app", daemon=True)
        self._lifespan: asyncio.Queue | None = None
        self._replies: asyncio.Queue | None = None
        self._task: asyncio.Future | None = None

    def _run(self, coroutine: Any, timeout_s: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def _lifespan_message(self, message: str) -> None:
        assert self._lifespan is not None and self._replies is not None
        await self._lifespan.put({"type": message})
        reply = await self._replies.get()
        assert reply["type"] == f"{message}.complete", reply

    async def _start(self) -> None:
        self._lifespan, self._replies = asyncio.Queue(), asyncio.Queue()
        self._task = asyncio.ensure_future(self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._lifespan.get, self._replies.put))
        await self._lifespan_message("lifespan.startup")

    def __enter__(self) -> "InProcessApp":
        self._thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self._lifespan_message("lifespan.shutdown"), 30.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def request(self, method: str, url: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                chunked: bool = False, timeout_s: float = 60.0) -> Answer:
        """Send one request (``url`` a path with an optional query); return the answer. No Content-Length when chunked."""
        parts = urlsplit(url)
        raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers or []]
        if not chunked and body and not any(name == b"content-length" for name, _ in raw):
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": unquote(parts.path or "/"), "raw_path": (parts.path or "/").encode("latin-1", "replace"),
            "query_string": parts.query.encode("latin-1", "replace"), "root_path": "", "headers": raw,
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        return self._run(self._call(scope, body), timeout_s)

    async def _call(self, scope: dict[str, Any], body: bytes) -> Answer:
        pieces = [body[i : i + _PIECE] for i in range(0, len(body), _PIECE)] or [b""]
        messages = [{"type": "http.request", "body": piece, "more_body": i + 1 < len(pieces)} for i, piece in enumerate(pieces)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)  # a client that sent everything and waits: only the answer ends this
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
        return Answer(start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
