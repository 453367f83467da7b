"""The balancer's view of its replicas: backends with pooled keep-alive connections, and the topology's choice.

``single`` and ``active-standby`` send to the first Ready replica in order, ``multi-active`` to the
Ready replica with the fewest requests in flight (round-robin among equals). During a blue-green or
canary rollout a traffic split (``weights``: revision -> percent) first chooses the revision, by
smooth weighted round-robin (a 20% canary gets exactly every fifth request), then the topology's rule
chooses among that revision's Ready replicas; a revision without a Ready replica passes its turn on.
Each backend counts its answers by status class and latency bucket, which a canary analysis reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from harness.platforms.local.http1 import MAX_HEAD_BYTES

__all__ = ["Backend", "Router", "ConnectFailed", "LATENCY_BOUNDS_MS"]

_MAX_IDLE_PER_BACKEND = 512
LATENCY_BOUNDS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)  # upper bounds; one more bucket above
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
    revision: int = 1
    statuses: dict[str, int] = field(default_factory=dict)  # "2xx" -> count, of every answer for this backend
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    def record(self, status: int, latency_ms: float) -> None:
        """Count one answer given for this backend (its own, or the balancer's 502/504 on its behalf)."""
        key = f"{status // 100}xx"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        index = next((i for i, bound in enumerate(LATENCY_BOUNDS_MS) if latency_ms <= bound), len(LATENCY_BOUNDS_MS))
        self.latency_buckets[index] += 1

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
            "upstream_errors": self.upstream_errors, "revision": self.revision, "statuses": dict(self.statuses),
            "latency_buckets": list(self.latency_buckets),
        }


class Router:
    """Chooses a Ready backend for each request according to the topology."""

    def __init__(self, topology: str) -> None:
        self.topology = topology
        self.backends: list[Backend] = []
        self.weights: dict[int, int] = {}  # revision -> percent; empty: no split
        self._credit: dict[int, float] = {}
        self._turn = 0

    def set_weights(self, weights: dict | None) -> None:
        """Split the traffic between revisions (``{revision: percent}``); None or {} ends the split."""
        self.weights = {int(k): int(v) for k, v in (weights or {}).items() if int(v) > 0}
        self._credit = {revision: 0.0 for revision in self.weights}

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
                                  responses=backend.responses if backend else 0,
                                  statuses=backend.statuses if backend else {},
                                  latency_buckets=backend.latency_buckets if backend else [0] * (len(LATENCY_BOUNDS_MS) + 1))
            backend.ready = bool(entry["ready"])
            backend.revision = int(entry.get("revision") or 1)
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
        if self.weights:
            ready = self._split(ready)
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

    def _split(self, ready: list[Backend]) -> list[Backend]:
        """Return the Ready backends of the revision whose turn it is (smooth weighted round-robin)."""
        present = {b.revision for b in ready}
        weights = {revision: weight for revision, weight in self.weights.items() if revision in present}
        if not weights:  # no Ready replica of a weighted revision: whatever is Ready serves
            return ready
        total = sum(weights.values())
        for revision, weight in weights.items():
            self._credit[revision] = self._credit.get(revision, 0.0) + weight
        chosen = max(weights, key=lambda revision: self._credit[revision])
        self._credit[chosen] -= total
        return [b for b in ready if b.revision == chosen]
