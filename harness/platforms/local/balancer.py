"""The front load balancer: a Kubernetes Service in one process, sending traffic only to Ready replicas.

Run as ``python -m harness.platforms.local.balancer --topology T``. It binds its port, prints
``{"port": P}`` on stdout, then reads its backends from stdin, one JSON line per change:
``{"backends": [{"name", "host", "port", "ready", "revision"}, ...]}`` (in replica order: the first is the
active-standby primary), optionally with ``"weights": {revision: percent}`` (a rollout's traffic split,
see `harness.platforms.local.routing`). End of stdin (the supervisor went away) or SIGTERM stops it.

Rate limit: with ``--rate-limit-rps R --rate-limit-burst B`` every proxied request first takes a token
from one bucket (`harness.platforms.local.ratelimit`); without one it is answered 429 JSON
``{"error": "rate limit exceeded: ..."}`` with ``Retry-After`` at once and never reaches a replica.

Routing: ``single`` and ``active-standby`` send to the first Ready replica in order, ``multi-active``
to the Ready replica with the fewest requests in flight (round-robin among equals). With no Ready
replica it answers 503 ``{"error": "no ready endpoints"}`` at once. A connection that fails to open
is answered 502, or, with ``--retry-on-connect-error``, retried once on another Ready replica (a mesh
retry policy). Every proxied response carries ``x-harness-replica: NAME``. ``GET /_balancer/stats``
returns its counters as JSON.

Request bodies: one over ``--max-body-bytes`` (the replicas' ``max_body_bytes``, default 4 MiB) is
answered 413 JSON by the balancer itself, as a replica would, without being forwarded: at once when its
Content-Length says so, at the chunk that passes the limit when chunked. Bodies up to 64 KiB are read
whole and forwarded (a stale pooled connection can then be retried); larger ones are streamed to a new
connection in 64 KiB pieces, so the balancer's memory does not grow with the body.

Network faults (`harness.platforms.local.netfaults`): the control line ``{"fault": {...}}`` starts one,
``{"clear_faults": [id, ...]}`` (null: all) ends them; each also ends by itself after its ``duration_s``.
Latency, reset and abort act before routing; a partitioned replica gets no new request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import struct
import sys
import time

from harness.platforms.local.http1 import (
    DEFAULT_MAX_BODY_BYTES,
    DISCARD_BYTES,
    DISCARD_S,
    HOP_BY_HOP,
    MAX_HEAD_BYTES,
    ClientFailed,
    Head,
    HttpError,
    StreamedBody,
    discard_request_body,
    json_response,
    keep_alive,
    parse_head,
    read_head,
    read_request_body,
    relay_body,
    render_head,
    request_body_length,
    response_framing,
)
from harness.errors import ConfigError
from harness.platforms.local.netfaults import FAULT_HEADER, FaultTable, parse_fault
from harness.platforms.local.ratelimit import RATE_LIMITED_ERROR, TokenBucket
from harness.platforms.local.routing import Backend, ConnectFailed as _ConnectFailed, Router

__all__ = ["Backend", "Router", "Balancer", "apply_control", "main", "STATS_PATH", "REPLICA_HEADER", "NO_READY_ERROR"]

STATS_PATH = "/_balancer/stats"
REPLICA_HEADER = "x-harness-replica"
NO_READY_ERROR = "no ready endpoints"
_STREAM_LIMIT = MAX_HEAD_BYTES
_BUFFERED_BODY_BYTES = 64 * 1024  # bodies up to this are read whole (retryable); larger ones are streamed


class _UpstreamFailed(Exception):
    pass


class Balancer:
    """The HTTP front end: one asyncio server proxying to the router's backends."""

    def __init__(self, router: Router, *, retry_on_connect_error: bool, connect_timeout_s: float,
                 request_timeout_s: float, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 limiter: TokenBucket | None = None, faults: FaultTable | None = None) -> None:
        self.router = router
        self.limiter = limiter
        self.faults = faults if faults is not None else FaultTable()
        self.retry = retry_on_connect_error
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_body_bytes = max_body_bytes
        self.no_ready = 0
        self.retries = 0
        self.requests = 0
        self.too_large = 0

    def stats(self) -> dict:
        return {
            "topology": self.router.topology, "requests": self.requests, "no_ready": self.no_ready,
            "retries": self.retries, "too_large": self.too_large, "max_body_bytes": self.max_body_bytes,
            "rate_limit": self.limiter.stats() if self.limiter else None, "weights": self.router.weights,
            "faults": self.faults.stats(), "backends": [b.stats() for b in self.router.backends],
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
                    length = request_body_length(head)
                except HttpError as exc:
                    writer.write(json_response(exc.status, {"error": str(exc)}, close=True))
                    await writer.drain()
                    break
                client_keep = keep_alive(head, head.start[2])
                if length is not None and length > self.max_body_bytes:  # refused before a byte is read, as a replica does
                    self.too_large += 1
                    writer.write(json_response(413, {"error": f"request body of {length} bytes exceeds "
                                                              f"max_body_bytes={self.max_body_bytes}"}, close=True))
                    await writer.drain()
                    if not head.has_token(b"expect", b"100-continue"):  # such a client waits, and sends nothing more
                        await discard_request_body(reader, length, max_bytes=DISCARD_BYTES, timeout_s=DISCARD_S)
                    break
                if head.has_token(b"expect", b"100-continue"):  # curl asks before sending a body
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if head.start[1].startswith(b"/_balancer/"):
                    await read_request_body(reader, head, _BUFFERED_BODY_BYTES)
                    status, payload = (200, self.stats()) if head.start[1] == STATS_PATH.encode() else (404, {"error": "unknown balancer path"})
                    writer.write(json_response(status, payload, close=not client_keep))
                    await writer.drain()
                elif length is not None and length <= _BUFFERED_BODY_BYTES:
                    body = await reader.readexactly(length) if length else b""
                    if not await self.forward(head, body, writer, client_keep):
                        break
                else:
                    body_source = StreamedBody(reader, length, self.max_body_bytes)
                    try:
                        if not await self.forward(head, body_source, writer, client_keep):
                            break
                    except ClientFailed as exc:  # nothing was answered yet: a refusal is answered, a break-off is not
                        if isinstance(exc.error, HttpError):
                            writer.write(json_response(exc.error.status, {"error": str(exc.error)}, close=True))
                            await writer.drain()
                            if exc.error.status == 413:  # the chunks are still in step: read on, so the answer is read
                                self.too_large += 1
                                await body_source.discard()
                        break
                if not client_keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, HttpError):
            pass  # the client went away or spoke something that isn't HTTP
        finally:
            writer.close()

    async def forward(self, head: Head, body: bytes | StreamedBody, writer: asyncio.StreamWriter, client_keep: bool) -> bool:
        """Proxy one request; return whether the client connection can carry another.

        Raises ClientFailed when a streamed body breaks off or passes the limit (nothing answered yet).
        """
        self.requests += 1
        if self.faults.active:  # the fault filter comes first, as Envoy's does: delay, then reset or abort
            decision = self.faults.decide()
            if decision.delay_s:
                await asyncio.sleep(decision.delay_s)
            if decision.reset:
                self._reset(writer)
                return False
            if decision.abort_status is not None:
                return await self._answer(decision.abort_status, f"fault injected: abort {decision.abort_id}".rstrip(),
                                          body, writer, client_keep, extra=[(FAULT_HEADER.encode(), b"abort")])
        if self.limiter is not None and (wait_s := self.limiter.take()) > 0:
            limit = self.limiter
            retry = str(limit.retry_after_s(wait_s)).encode()
            return await self._answer(429, f"{RATE_LIMITED_ERROR}: {limit.rate:g} requests/s, burst {limit.burst}",
                                      body, writer, client_keep, extra=[(b"retry-after", retry)])
        cut = self.faults.cut_off()  # partitioned replicas: no new request reaches them
        excluded = tuple(b for b in self.router.backends if b.name in cut) if cut else ()
        backend = self.router.pick(excluded)
        if backend is None:
            self.no_ready += 1
            return await self._answer(503, NO_READY_ERROR, body, writer, client_keep)
        started = time.monotonic()
        tried: tuple[Backend, ...] = ()
        while True:
            tried += (backend,)
            try:
                return await self._exchange(backend, head, body, writer, client_keep)
            except _ConnectFailed as exc:
                backend.connect_errors += 1
                other = self.router.pick(tried + excluded) if self.retry and len(tried) == 1 else None
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
            backend.record(status, (time.monotonic() - started) * 1000)
            return await self._answer(status, message, body, writer, client_keep, backend)

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        # close without an answer; SO_LINGER 0 makes it a TCP reset (RST), not an orderly FIN
        try:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass
        writer.transport.abort()

    @staticmethod
    async def _answer(status: int, message: str, body: bytes | StreamedBody, writer: asyncio.StreamWriter,
                      client_keep: bool, backend: Backend | None = None, extra: list[tuple[bytes, bytes]] = ()) -> bool:
        # the balancer's own answer; a streamed body may be partly unread: answer, drop the rest, close
        keep = client_keep and not isinstance(body, StreamedBody)
        extra = [*extra, *([(REPLICA_HEADER.encode(), backend.name.encode())] if backend is not None else [])]
        writer.write(json_response(status, {"error": message}, close=not keep, extra=extra))
        await writer.drain()
        if isinstance(body, StreamedBody):
            await body.discard()
        return keep

    @staticmethod
    def _request_head(head: Head, body: bytes | StreamedBody) -> bytes:
        method, target, _ = head.start
        # the balancer frames the body it forwards, and has answered any "expect" itself
        headers = [(k, v) for k, v in head.headers
                   if k.lower() not in HOP_BY_HOP and k.lower() not in (b"content-length", b"expect")]
        if isinstance(body, StreamedBody):
            framing = (b"transfer-encoding", b"chunked") if body.length is None else (b"content-length", str(body.length).encode())
            headers.append(framing)
        elif body or method in (b"POST", b"PUT", b"PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        return render_head(method + b" " + target + b" HTTP/1.1", headers)

    @staticmethod
    async def _send_streamed(upstream: asyncio.StreamWriter, body: StreamedBody) -> None:
        # client -> replica, one piece at a time: the balancer holds at most a piece, whatever the body's size
        chunked = body.length is None
        while (piece := await body.next_piece()) is not None:
            upstream.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await upstream.drain()
        if chunked:
            upstream.write(b"0\r\n\r\n")
        await upstream.drain()

    async def _send(self, backend: Backend, head: Head, body: bytes | StreamedBody) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Head]:
        # a buffered body may be sent again on a fresh connection when a pooled one turns out closed; a
        # streamed one goes once, on a fresh connection
        request_head = self._request_head(head, body)
        streamed = isinstance(body, StreamedBody)
        for fresh in ((True,) if streamed else (False, True)):
            reader, upstream, reused = await backend.acquire(fresh, self.connect_timeout_s)
            try:
                if streamed:
                    upstream.write(request_head)
                    await self._send_streamed(upstream, body)
                else:
                    upstream.write(request_head + body)
                    await upstream.drain()
                async with asyncio.timeout(self.request_timeout_s):
                    raw = await read_head(reader)
                if raw is None:
                    raise ConnectionResetError("connection closed before a response")
                return reader, upstream, parse_head(raw)
            except (TimeoutError, ClientFailed):
                upstream.close()
                raise
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                upstream.close()
                if reused:  # a keep-alive connection the replica had closed: retry on a new one
                    continue
                raise _UpstreamFailed(str(exc) or type(exc).__name__) from None
        raise AssertionError("unreachable: the last try raises or returns")

    async def _exchange(self, backend: Backend, head: Head, body: bytes | StreamedBody, writer: asyncio.StreamWriter,
                        client_keep: bool) -> bool:
        backend.inflight += 1
        backend.requests += 1
        started = time.monotonic()
        try:
            reader, upstream, response = await self._send(backend, head, body)
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
            backend.record(int(status), (time.monotonic() - started) * 1000)
            if framing[0] != "close" and keep_alive(response, version):
                backend.release(reader, upstream)
            else:
                upstream.close()
            return keep
        finally:
            backend.inflight -= 1


def apply_control(message: object, router: Router, faults: FaultTable) -> None:
    """Apply one control line (backends, weights, a fault, a clear); a bad fault is ignored, never half-applied."""
    if not isinstance(message, dict):
        return
    if "backends" in message:
        router.update(message["backends"])
    if "weights" in message:
        router.set_weights(message["weights"])
    if "fault" in message:  # validated by the supervisor already
        try:
            faults.apply(parse_fault(message["fault"]))
        except ConfigError as exc:
            print(f"balancer: ignoring fault: {exc}", file=sys.stderr)
    if "clear_faults" in message:  # a list of fault ids, or null for every fault
        ids = message["clear_faults"]
        faults.clear(None if ids is None else [str(i) for i in ids] if isinstance(ids, list) else [])


async def _read_control(router: Router, faults: FaultTable, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            apply_control(json.loads(line), router, faults)
        except ValueError:
            print(f"balancer: ignoring control line {line[:200]!r}", file=sys.stderr)
    stop.set()  # the supervisor is gone


async def serve(args: argparse.Namespace) -> None:
    """Run the balancer until stdin closes or SIGTERM/SIGINT."""
    router = Router(args.topology)
    faults = FaultTable()
    balancer = Balancer(router, retry_on_connect_error=args.retry_on_connect_error,
                        connect_timeout_s=args.connect_timeout_s, request_timeout_s=args.request_timeout_s,
                        max_body_bytes=args.max_body_bytes,
                        limiter=TokenBucket(args.rate_limit_rps, args.rate_limit_burst) if args.rate_limit_rps else None,
                        faults=faults)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(balancer.handle, args.host, args.port, limit=_STREAM_LIMIT, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    control = asyncio.create_task(_read_control(router, faults, stop))
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
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body forwarded; beyond it 413, as the replicas answer (default 4 MiB)")
    parser.add_argument("--rate-limit-rps", type=float, default=None, help="token bucket refill rate (default: no limit)")
    parser.add_argument("--rate-limit-burst", type=int, default=1, help="token bucket size (default 1)")
    args = parser.parse_args(argv)
    try:
        import uvloop  # installed with uvicorn[standard]; a faster event loop for a hot proxy

        uvloop.run(serve(args))
    except ImportError:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
