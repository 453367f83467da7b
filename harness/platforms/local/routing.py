"""The balancer's view of its replicas: backends with pooled keep-alive connections, and the topology's choice.

``single`` and ``active-standby`` send to the first Ready replica in order, ``multi-active`` to the
Ready replica with the fewest requests in flight (round-robin among equals).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from harness.platforms.local.http1 import MAX_HEAD_BYTES

__all__ = ["Backend", "Router", "ConnectFailed"]

_MAX_IDLE_PER_BACKEND = 512
_STREAM_LIMIT = MAX_HEAD_BYTES


class ConnectFailed(Exception):
    """A connection to a replica could not be opened (refused, unreachable, timed out)."""


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
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
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
