"""The asyncio side of an Open Inference Protocol v2 client, shared by the rate generator and the prober.

Only the child processes of the load layer use it (aiohttp and the event loop are imported inside
the functions that need them). Errors are data here: a failed request returns its status (0 when no
response arrived) and a short error text, never an exception.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

__all__ = ["JSON_HEADERS", "infer_url", "request_bodies", "post_inference", "run_event_loop"]

JSON_HEADERS = {"Content-Type": "application/json"}
ERROR_TEXT_CHARS = 200


def infer_url(host: str, model: str) -> str:
    """Return the v2 inference URL of ``model`` behind ``host`` (``http://h:p``)."""
    return f"{host.rstrip('/')}/v2/models/{model}/infer"


def request_bodies(model: str, batch_size: int = 1, variants: int = 8) -> list[bytes]:
    """Return ``variants`` serialised v2 request bodies with valid random inputs (seeds 0..variants-1)."""
    import orjson

    from harness.service.registry import example_request

    return [orjson.dumps(example_request(model, batch_size, seed)) for seed in range(variants)]


async def post_inference(session: Any, url: str, body: bytes, timeout_s: float) -> tuple[int, str]:
    """POST ``body`` to ``url`` and read the answer; return (HTTP status or 0, error text or "").

    A status other than 200 is an error ("HTTP <status>"); a timeout or connection problem gives
    status 0. Never raises for request failures (cancellation still propagates).
    """
    import aiohttp

    try:
        async with session.post(url, data=body, headers=JSON_HEADERS,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            await response.read()
            status = response.status
    except (asyncio.TimeoutError, TimeoutError):
        return 0, f"timeout after {timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return 0, (f"{type(exc).__name__}: {exc}")[:ERROR_TEXT_CHARS]
    return status, "" if status == 200 else f"HTTP {status}"


def run_event_loop(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main()`` on uvloop where installed (tighter timers, faster sockets), else asyncio; return its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
