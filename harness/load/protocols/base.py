"""What every protocol adapter is: a request built for the n-th request, a response read into a `Reading`.

An adapter knows nothing of sockets or event loops: the senders (the asyncio one of the rate generator
and the prober, `harness.load.protocols.aio`; Locust's gevent client in the locustfile) send what
`Adapter.request` returns and hand back what arrived as *pieces*: ``(t_ms, bytes)`` in arrival order,
``t_ms`` counted from the request's intended send time (the clock of ``RequestRecord.latency_ms``).
A piece boundary is wherever the transport delivered data; adapters that care (streams) split lines
themselves, each line timed by the piece that completed it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["Piece", "HttpRequest", "Reading", "Adapter", "timed_lines", "ERROR_TEXT_CHARS"]

ERROR_TEXT_CHARS = 200

Piece = tuple[float, bytes]  # (ms since the intended send time, data)


@dataclass(frozen=True)
class HttpRequest:
    """One request to send: method, path (joined to the target's base URL), headers, body, and whether its
    answer is a stream to be read piece by piece (timed) rather than at once."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: bool = False


@dataclass(frozen=True)
class Reading:
    """What a response meant, in the fields of a `harness.request_records.RequestRecord`.

    ``ok`` false with ``error`` set for a failure; the token fields are NaN / 0 / () where the protocol
    has no tokens (see `harness.load.protocols.openai` for their definitions).
    """

    ok: bool
    status: int
    error: str = ""
    ttft_ms: float = math.nan
    tpot_ms: float = math.nan
    output_tokens: int = 0
    itl_ms: tuple[float, ...] = ()

    def record_fields(self) -> dict[str, object]:
        """Return the keyword arguments of a RequestRecord this reading fills (all but times and source)."""
        return {"status": self.status, "ok": self.ok, "error": self.error[:ERROR_TEXT_CHARS], "ttft_ms": self.ttft_ms,
                "tpot_ms": self.tpot_ms, "output_tokens": self.output_tokens, "itl_ms": self.itl_ms}


class Adapter:
    """A protocol: how to build the n-th request, and how to read a response. Subclasses set ``name``."""

    name = ""

    def request(self, n: int) -> HttpRequest:
        """Return the ``n``-th request (n counts from 0; the same n gives the same request)."""
        raise NotImplementedError

    def read(self, status: int, pieces: Sequence[Piece], latency_ms: float, error: str = "") -> Reading:
        """Return the `Reading` of a response: ``status`` (0 when none came), what arrived, the end-to-end
        latency and the transport's error text ("" when the exchange completed). The base rule: ok when
        the transport completed and the status is 200."""
        if error:
            return Reading(False, status, error)
        return Reading(status == 200, status, "" if status == 200 else f"HTTP {status}")


def timed_lines(pieces: Sequence[Piece]) -> tuple[list[tuple[float, bytes]], bytes]:
    """Return the complete lines of the concatenated pieces (without line endings), each with the time of
    the piece that completed it, and the bytes after the last line break (an unfinished line)."""
    lines: list[tuple[float, bytes]] = []
    pending = b""
    for t_ms, data in pieces:
        pending += data
        *done, pending = pending.split(b"\n")
        lines.extend((t_ms, line.rstrip(b"\r")) for line in done)
    return lines, pending
