"""The asyncio sender of the protocol adapters, shared by the rate generator and the prober.

Only the child processes of the load layer use it (aiohttp and the event loop are imported inside the
functions that need them). Errors are data here: a failed request is a `Reading` with ``ok`` false and
its status (0 when no response arrived), never an exception (cancellation still propagates). A
streamed answer is read as it arrives, each piece timed on the monotonic clock from ``start_s``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from harness.load.protocols.base import ERROR_TEXT_CHARS, Adapter, HttpRequest, Piece, Reading

__all__ = ["exchange", "send", "run_event_loop"]


async def exchange(session: Any, base_url: str, request: HttpRequest, timeout_s: float,
                   start_s: float) -> tuple[int, list[Piece], float, str]:
    """Send ``request`` to ``base_url`` and read the answer within ``timeout_s`` (the whole exchange).

    Return (HTTP status or 0, the pieces that arrived with their ms since ``start_s`` (``time.monotonic``),
    the latency in ms from ``start_s`` to the end, the transport's error text or ""). A timeout, a refused
    or reset connection, or a body cut short (a streamed answer whose connection closed mid-way) is an
    error with the status that came, if any.
    """
    import aiohttp

    status, pieces, error = 0, [], ""
    try:
        async with session.request(request.method, base_url.rstrip("/") + request.path, data=request.body or None,
                                   headers=request.headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            status = response.status
            if request.stream:
                async for data in response.content.iter_any():
                    pieces.append(((time.monotonic() - start_s) * 1000.0, data))
            else:
                data = await response.read()
                pieces.append(((time.monotonic() - start_s) * 1000.0, data))
    except (asyncio.TimeoutError, TimeoutError):
        error = f"timeout after {timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        error = (f"{type(exc).__name__}: {exc}")[:ERROR_TEXT_CHARS]
    return status, pieces, (time.monotonic() - start_s) * 1000.0, error


async def send(session: Any, adapter: Adapter, base_url: str, n: int, timeout_s: float,
               start_s: float) -> tuple[Reading, float]:
    """Send the adapter's ``n``-th request; return its `Reading` and its latency in ms from ``start_s``."""
    status, pieces, latency_ms, error = await exchange(session, base_url, adapter.request(n), timeout_s, start_s)
    return adapter.read(status, pieces, latency_ms, error), latency_ms


def run_event_loop(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main()`` on uvloop where installed (tighter timers, faster sockets), else asyncio; return its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
