"""The front load balancer: a Kubernetes Service in one process, sending traffic only to Ready replicas.

Run as ``python -m harness.platforms.local.balancer --topology T``. It binds its port, prints
``{"port": P}`` on stdout, then reads its backends from stdin, one JSON line per change:
``{"backends": [{"name", "host", "port", "ready"}, ...]}`` (in replica order: the first is the
active-standby primary). End of stdin (the supervisor went away) or SIGTERM stops it.

Routing: ``single`` and ``active-standby`` send to the first Ready replica in order, ``multi-active``
to the Ready replica with the fewest requests in flight (round-robin among equals). With no Ready
replica it answers 503 ``{"error": "no ready endpoints"}`` at once. A connection that fails to open
is answered 502, or, with ``--retry-on-connect-error``, retried once on another Ready replica (a mesh
retry policy). Every proxied response carries ``x-harness-replica: NAME``. ``GET /_balancer/stats``
returns its counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass, field

from harness.platforms.local.http1 import (
    HOP_BY_HOP,
    MAX_HEAD_BYTES,
    Head,
    HttpError,
    json_response,
    keep_alive,
    parse_head,
    read_head,
    read_request_body,
    relay_body,
    render_head,
    response_framing,
)

__all__ = ["Backend", "Router", "Balancer", "main", "STATS_PATH", "REPLICA_HEADER", "NO_READY_ERROR"]

STATS_PATH = "/_balancer/stats"
REPLICA_HEADER = "x-harness-replica"
NO_READY_ERROR = "no ready endpoints"
_MAX_IDLE_PER_BACKEND = 512
_STREAM_LIMIT = MAX_HEAD_BYTES


class _ConnectFailed(Exception):
    pass


class _UpstreamFailed(Exception):
    pass


@dataclass(eq=False)
class Backend:
    """One replica as the balancer sees it, with its idle keep-alive connections and counters."""

    name: str
    host: str
    port: int
    ready: bool = False
    inflight: int = 0
    requests: int = 0
    responses: int = 0
    connect_errors: int = 0
    upstream_errors: int = 0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    async def acquire(self, fresh: bool, timeout_s: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """Return (reader, writer, reused): an idle pooled connection unless ``fresh``, else a new one."""
        while self.idle and not fresh:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=_STREAM_LIMIT)
        except (OSError, TimeoutError) as exc:
            raise _ConnectFailed(str(exc) or type(exc).__name__) from None
        return reader, writer, False

    def release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.idle) < _MAX_IDLE_PER_BACKEND and self.ready:
            self.idle.append((reader, writer))
        else:
            writer.close()

    def drop_idle(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()

    def stats(self) -> dict:
        return {
            "name": self.name, "port": self.port, "ready": self.ready, "inflight": self.inflight,
            "requests": self.requests, "responses": self.responses, "connect_errors": self.connect_errors,
            "upstream_errors": self.upstream_errors,
        }


class Router:
    """Chooses a Ready backend for each request according to the topology."""

    def __init__(self, topology: str) -> None:
        self.topology = topology
        self.backends: list[Backend] = []
        self._turn = 0

    def update(self, entries: list[dict]) -> None:
        """Replace the backend list (keeping counters and pools of replicas whose address is unchanged)."""
        old = {b.name: b for b in self.backends}
        fresh = []
        for entry in entries:
            backend = old.pop(entry["name"], None)
            if backend is None or (backend.host, backend.port) != (entry["host"], entry["port"]):
                if backend is not None:
                    backend.drop_idle()
                backend = Backend(entry["name"], entry["host"], int(entry["port"]),
                                  requests=backend.requests if backend else 0,
                                  responses=backend.responses if backend else 0)
            backend.ready = bool(entry["ready"])
            if not backend.ready:
                backend.drop_idle()  # the process may be gone: don't keep its sockets
            fresh.append(backend)
        for gone in old.values():
            gone.drop_idle()
        self.backends = fresh

    def pick(self, exclude: tuple[Backend, ...] = ()) -> Backend | None:
        """Return the backend for the next request, or None when no Ready backend is left."""
        ready = [b for b in self.backends if b.ready and b not in exclude]
        if not ready:
            return None
        if self.topology != "multi-active":
            return ready[0]
        self._turn += 1
        count = len(ready)
        best = ready[self._turn % count]
        for offset in range(1, count):
            candidate = ready[(self._turn + offset) % count]
            if candidate.inflight < best.inflight:
                best = candidate
        return best


class Balancer:
    """The HTTP front end: one asyncio server proxying to the router's backends."""

    def __init__(self, router: Router, *, retry_on_connect_error: bool, connect_timeout_s: float,
                 request_timeout_s: float) -> None:
        self.router = router
        self.retry = retry_on_connect_error
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.no_ready = 0
        self.retries = 0
        self.requests = 0

    def stats(self) -> dict:
        return {
            "topology": self.router.topology, "requests": self.requests, "no_ready": self.no_ready,
            "retries": self.retries, "backends": [b.stats() for b in self.router.backends],
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it closes (keep-alive)."""
        try:
            while True:
                try:
                    raw = await read_head(reader)
                    if raw is None:
                        break
                    head = parse_head(raw)
                    if head.has_token(b"expect", b"100-continue"):  # curl asks before sending a body
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = await read_request_body(reader, head)
                except HttpError as exc:
                    writer.write(json_response(exc.status, {"error": str(exc)}, close=True))
                    await writer.drain()
                    break
                client_keep = keep_alive(head, head.start[2])
                if head.start[1].startswith(b"/_balancer/"):
                    status, payload = (200, self.stats()) if head.start[1] == STATS_PATH.encode() else (404, {"error": "unknown balancer path"})
                    writer.write(json_response(status, payload, close=not client_keep))
                    await writer.drain()
                elif not await self.forward(head, body, writer, client_keep):
                    break
                if not client_keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or spoke something that isn't HTTP
        finally:
            writer.close()

    async def forward(self, head: Head, body: bytes, writer: asyncio.StreamWriter, client_keep: bool) -> bool:
        """Proxy one request; return whether the client connection can carry another."""
        self.requests += 1
        backend = self.router.pick()
        if backend is None:
            self.no_ready += 1
            writer.write(json_response(503, {"error": NO_READY_ERROR}, close=not client_keep))
            await writer.drain()
            return client_keep
        tried: tuple[Backend, ...] = ()
        while True:
            tried += (backend,)
            try:
                return await self._exchange(backend, head, body, writer, client_keep)
            except _ConnectFailed as exc:
                backend.connect_errors += 1
                other = self.router.pick(tried) if self.retry and len(tried) == 1 else None
                if other is not None:
                    self.retries += 1
                    backend = other
                    continue
                status, message = 502, f"replica {backend.name} refused the connection: {exc}"
            except TimeoutError:
                backend.upstream_errors += 1
                status, message = 504, f"replica {backend.name} did not answer within {self.request_timeout_s:g} s"
            except _UpstreamFailed as exc:
                backend.upstream_errors += 1
                status, message = 502, f"replica {backend.name} failed: {exc}"
            extra = [(REPLICA_HEADER.encode(), backend.name.encode())]
            writer.write(json_response(status, {"error": message}, close=not client_keep, extra=extra))
            await writer.drain()
            return client_keep

    def _request_bytes(self, head: Head, body: bytes) -> bytes:
        method, target, _ = head.start
        # the body is already here: its framing is ours to state, and nothing is left to "expect"
        headers = [(k, v) for k, v in head.headers
                   if k.lower() not in HOP_BY_HOP and k.lower() not in (b"content-length", b"expect")]
        if body or method in (b"POST", b"PUT", b"PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        return render_head(method + b" " + target + b" HTTP/1.1", headers) + body

    async def _exchange(self, backend: Backend, head: Head, body: bytes, writer: asyncio.StreamWriter,
                        client_keep: bool) -> bool:
        request = self._request_bytes(head, body)
        backend.inflight += 1
        backend.requests += 1
        try:
            for fresh in (False, True):
                reader, upstream, reused = await backend.acquire(fresh, self.connect_timeout_s)
                try:
                    upstream.write(request)
                    await upstream.drain()
                    async with asyncio.timeout(self.request_timeout_s):
                        raw = await read_head(reader)
                    if raw is None:
                        raise ConnectionResetError("connection closed before a response")
                    response = parse_head(raw)
                    break
                except TimeoutError:
                    upstream.close()
                    raise
                except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                    upstream.close()
                    if reused:  # a keep-alive connection the replica had closed: retry on a new one
                        continue
                    raise _UpstreamFailed(str(exc) or type(exc).__name__) from None
            framing = response_framing(response, head.start[0])
            keep = client_keep and framing[0] != "close"
            headers = [(k, v) for k, v in response.headers if k.lower() not in (b"connection", b"keep-alive")]
            headers.append((REPLICA_HEADER.encode(), backend.name.encode()))
            if not keep:
                headers.append((b"connection", b"close"))
            version, status, reason = response.start
            writer.write(render_head(b"HTTP/1.1 " + status + (b" " + reason if reason else b""), headers))
            try:
                await relay_body(reader, writer, framing)
            except BaseException:
                upstream.close()
                raise ConnectionResetError("response cut off") from None
            backend.responses += 1
            if framing[0] != "close" and keep_alive(response, version):
                backend.release(reader, upstream)
            else:
                upstream.close()
            return keep
        finally:
            backend.inflight -= 1


async def _read_control(router: Router, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            message = json.loads(line)
        except ValueError:
            print(f"balancer: ignoring control line {line[:200]!r}", file=sys.stderr)
            continue
        if "backends" in message:
            router.update(message["backends"])
    stop.set()  # the supervisor is gone


async def serve(args: argparse.Namespace) -> None:
    """Run the balancer until stdin closes or SIGTERM/SIGINT."""
    router = Router(args.topology)
    balancer = Balancer(router, retry_on_connect_error=args.retry_on_connect_error,
                        connect_timeout_s=args.connect_timeout_s, request_timeout_s=args.request_timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(balancer.handle, args.host, args.port, limit=_STREAM_LIMIT, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    control = asyncio.create_task(_read_control(router, stop))
    await stop.wait()
    control.cancel()
    server.close()


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run the balancer; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m harness.platforms.local.balancer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--topology", choices=("single", "active-standby", "multi-active"), required=True)
    parser.add_argument("--retry-on-connect-error", action="store_true")
    parser.add_argument("--connect-timeout-s", type=float, default=1.0)
    parser.add_argument("--request-timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # installed with uvicorn[standard]; a faster event loop for a hot proxy

        uvloop.run(serve(args))
    except ImportError:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
