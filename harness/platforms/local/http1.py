"""The slice of HTTP/1.1 the front balancer needs: read a head, frame a body, relay it, write a reply.

Written on asyncio streams rather than a web framework so the balancer adds little per request: heads
are parsed once; small request bodies are buffered (so a request can be retried on a fresh connection),
larger ones are streamed through in chunks of at most 64 KiB and never held whole; response bodies are
streamed through as they arrive (chunked bodies relayed as they are). Memory per request is bounded by
the chunk size, whatever the body's size.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "HttpError",
    "Head",
    "read_head",
    "parse_head",
    "request_body_length",
    "response_framing",
    "read_request_body",
    "body_pieces",
    "stream_request_body",
    "discard_request_body",
    "relay_body",
    "keep_alive",
    "render_head",
    "json_response",
    "ClientFailed",
    "StreamedBody",
    "DISCARD_BYTES",
    "DISCARD_S",
]

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 4 * 2**20  # the reference service's max_body_bytes default (ServiceConfig)
_RELAY_CHUNK = 64 * 1024
DISCARD_BYTES = 64 * 2**20  # of a refused body, read and dropped at most this much before closing ...
DISCARD_S = 2.0  # ... within this long, so that a client still sending can read the 413
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
            404: "Not Found", 429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 200: "OK"}


class HttpError(Exception):
    """A malformed message; ``status`` is what the balancer answers a client with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Head:
    """A request line (method, target, version) or status line (version, status, reason), and headers."""

    start: tuple[bytes, bytes, bytes]
    headers: list[tuple[bytes, bytes]]

    def get(self, name: bytes) -> bytes | None:
        """Return the last value of header ``name`` (lower-case bytes), or None."""
        found = None
        for key, value in self.headers:
            if key.lower() == name:
                found = value
        return found

    def has_token(self, name: bytes, token: bytes) -> bool:
        value = self.get(name)
        return value is not None and token in (t.strip().lower() for t in value.split(b","))


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Return the bytes of one message head (through the blank line), or None at a clean end of stream.

    Raises HttpError(431) for an oversized head, ConnectionError for a stream cut mid-head.
    """
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ConnectionResetError("stream ended inside a message head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "message head too large") from None


def parse_head(data: bytes) -> Head:
    """Return the parsed head; raise HttpError(400) when it is not HTTP/1.x."""
    lines = data[:-4].split(b"\r\n")
    start = lines[0].split(b" ", 2)
    if len(start) < 2:
        raise HttpError(400, "malformed start line")
    if len(start) == 2:
        start.append(b"")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        headers.append((name, value.strip()))
    return Head((start[0], start[1], start[2]), headers)


def request_body_length(head: Head) -> int | None:
    """Return the Content-Length of a request (0 if none), or None for a chunked body; raise HttpError(400)."""
    if head.has_token(b"transfer-encoding", b"chunked"):
        return None
    value = head.get(b"content-length")
    if value is None:
        return 0
    if not value.isdigit() or len(value) > 18:
        raise HttpError(400, "bad Content-Length")
    return int(value)


def response_framing(head: Head, method: bytes) -> tuple[str, int]:
    """Return how a response body ends: ("none", 0), ("length", n), ("chunked", 0) or ("close", 0)."""
    status = int(head.start[1]) if head.start[1].isdigit() else 0
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    if head.has_token(b"transfer-encoding", b"chunked"):
        return "chunked", 0
    value = head.get(b"content-length")
    if value is not None and value.isdigit():
        return "length", int(value)
    return "close", 0


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"request body exceeds max_body_bytes={limit}")


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    # the data of a chunked body, piece by piece (a big chunk in pieces); trailers are dropped
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return
        while size:
            piece = await reader.readexactly(min(size, _RELAY_CHUNK))
            size -= len(piece)
            yield piece
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "bad chunk framing")


async def body_pieces(reader: asyncio.StreamReader, length: int | None) -> AsyncIterator[bytes]:
    """Yield a request body in pieces of at most 64 KiB: ``length`` bytes, or de-chunked when ``length`` is None.

    Raises HttpError(400) for bad chunk framing, asyncio.IncompleteReadError if the client stops.
    """
    if length is None:
        async for piece in _chunks(reader):
            yield piece
        return
    while length:
        piece = await reader.readexactly(min(length, _RELAY_CHUNK))
        length -= len(piece)
        yield piece


async def stream_request_body(reader: asyncio.StreamReader, length: int | None, limit: int) -> AsyncIterator[bytes]:
    """Yield a request body as `body_pieces` does, refusing it past ``limit`` bytes.

    Raises HttpError(413) at once when the Content-Length is over ``limit``, or, chunked, before yielding
    the piece that passes it; otherwise as `body_pieces`.
    """
    if length is not None and length > limit:
        raise _too_large(limit)
    total = 0
    async for piece in body_pieces(reader, length):
        total += len(piece)
        if total > limit:
            raise _too_large(limit)
        yield piece


async def read_request_body(reader: asyncio.StreamReader, head: Head, limit: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """Return the whole (small) body of the request ``head`` heads, de-chunked; raise as `stream_request_body` does."""
    return b"".join([piece async for piece in stream_request_body(reader, request_body_length(head), limit)])


async def discard_request_body(reader: asyncio.StreamReader, length: int | None, *, max_bytes: int,
                               timeout_s: float) -> bool:
    """Read and drop what is left of a refused request body; return whether all of it was read.

    Bounded by ``max_bytes`` and ``timeout_s``: a client still sending past either is cut off. Reading
    the rest before closing lets the client read the refusal (closing with unread data sends a reset).
    """
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in stream_request_body(reader, length, max_bytes):
                pass
        return True
    except (HttpError, TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False


async def relay_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: tuple[str, int]) -> None:
    """Copy one response body from ``reader`` to ``writer`` as it arrives, keeping its framing.

    Raises ConnectionError (or asyncio.IncompleteReadError) if either side breaks off.
    """
    kind, length = framing
    if kind == "length":
        remaining = length
        while remaining:
            chunk = await reader.read(min(remaining, _RELAY_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            writer.write(chunk)
            remaining -= len(chunk)
            if remaining:
                await writer.drain()
    elif kind == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    writer.write(line)
                writer.write(b"\r\n")
                break
            writer.write(await reader.readexactly(size + 2))
            await writer.drain()
    elif kind == "close":
        while chunk := await reader.read(_RELAY_CHUNK):
            writer.write(chunk)
            await writer.drain()
    await writer.drain()


def keep_alive(head: Head, version: bytes) -> bool:
    """Return whether the connection that carried ``head`` (HTTP ``version``) stays open after it."""
    if head.has_token(b"connection", b"close"):
        return False
    if version == b"HTTP/1.0":
        return head.has_token(b"connection", b"keep-alive")
    return True


def render_head(start: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Return a message head: the start line, the headers, and the blank line."""
    return b"".join([start, b"\r\n", *(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n"])


def json_response(status: int, payload: object, *, close: bool = False, extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    """Return a complete HTTP/1.1 response with a JSON body."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    start = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode()
    return render_head(start, headers) + body


class ClientFailed(Exception):
    """The client's request body broke off or was refused while being streamed; ``error`` says which."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class StreamedBody:
    """A request body still on the client connection (``length`` bytes, or chunked when None), read piece by piece."""

    def __init__(self, reader: asyncio.StreamReader, length: int | None, limit: int) -> None:
        self.length = length
        self.limit = limit
        self.read = 0
        self._pieces = body_pieces(reader, length)

    async def next_piece(self) -> bytes | None:
        """Return the next piece, None at the end; raise ClientFailed if the client breaks off or passes the limit."""
        try:
            piece = await anext(self._pieces, None)
        except (HttpError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise ClientFailed(exc) from None
        if piece is not None:
            self.read += len(piece)
            if self.read > self.limit:  # a chunked body passing the limit: refused before this piece goes on
                raise ClientFailed(HttpError(413, f"request body exceeds max_body_bytes={self.limit}"))
        return piece

    async def discard(self) -> None:
        """Read and drop the rest (bounded in bytes and time), so that the client can read an answer sent before it."""
        dropped = 0
        try:
            async with asyncio.timeout(DISCARD_S):
                async for piece in self._pieces:
                    dropped += len(piece)
                    if dropped > DISCARD_BYTES:
                        return
        except (TimeoutError, HttpError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
