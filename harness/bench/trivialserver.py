"""A trivial HTTP endpoint for measuring load generators: every request answered at once with one fixed reply.

``python -m harness.bench.trivialserver`` listens on 127.0.0.1 (a free port), prints ``PORT <n>`` on
stdout once it does, and answers every request (any method, any path, keep-alive) with
``200 {"outputs": []}``: what a load generator's own ceiling is measured against (`harness.bench.loadgen`).
It is an asyncio protocol that only finds the end of each request (its headers and Content-Length),
so it spends a small fraction of what a client spends per request; a generator that falls behind
against it is the generator, not the endpoint. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

__all__ = ["REPLY", "main"]

BODY = b'{"outputs": []}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode()
         + b"\r\nConnection: keep-alive\r\n\r\n" + BODY)
MAX_HEADER_BYTES = 65536


class _Answer(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(REPLY)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await loop.create_server(_Answer, sock=sock, backlog=1024)
    sys.stdout.write(f"PORT {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


def main() -> int:
    """Serve until SIGTERM or SIGINT; return 0."""
    from harness.load.protocols.aio import run_event_loop

    run_event_loop(_serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
