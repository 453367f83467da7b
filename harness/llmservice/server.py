"""The generative service's process: bind the port at once, load in the background, drain on SIGTERM.

stdout carries one JSON event per line, as the reference service's (`harness.service.server`):
``listening`` (the port accepts connections), ``ready`` (model loaded and warmed: readiness answers
200), ``load_failed``, ``draining`` (SIGTERM/SIGINT: readiness 503, new requests 503, running answers
go on), ``fault``/``crash`` and ``exit``. The drain ends when no request is left or at the end of
``grace_period_s``, whichever comes first; a second signal ends it at once.
"""

from __future__ import annotations

import os
import sys
import time
from types import FrameType
from typing import Any

import orjson
import uvicorn

from harness.llmservice import MODEL_NAME
from harness.llmservice.api import LLMApp
from harness.service.server import bind_socket

__all__ = ["serve", "emit_event"]

_TICK_S = 0.1


def emit_event(event: dict[str, Any]) -> None:
    """Write one JSON event line to stdout and flush it."""
    sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    sys.stdout.flush()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: LLMApp, grace_period_s: float) -> None:
        super().__init__(config)
        self.app, self.grace_period_s = app, grace_period_s
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:  # a second signal: now
            self.should_exit = True
            return
        self.drain_deadline = time.monotonic() + self.grace_period_s
        if self.app.engine is not None:
            self.app.engine.draining = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and not self.should_exit:
            engine = self.app.engine
            if counter % 10 == 0 or engine is None or engine.idle():
                emit_event({"event": "draining", "running": 0 if engine is None else len(engine.scheduler.running)})
            if engine is None or engine.idle() or time.monotonic() >= self.drain_deadline:
                self.config.timeout_graceful_shutdown = 0.2  # type: ignore[assignment]
                self.should_exit = True
        return await super().on_tick(counter)


def serve(app: LLMApp, host: str, port: int, grace_period_s: float) -> int:
    """Serve ``app`` on ``host:port`` until drained; return the exit code (0). Raises HarnessError if the port is taken."""
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    config = uvicorn.Config(app, loop=loop, http=http, lifespan="on", access_log=False, log_config=None,
                            log_level="warning", timeout_keep_alive=5)
    server = _Server(config, app, grace_period_s)
    emit_event({"event": "listening", "host": host, "port": bound, "pid": os.getpid(), "model": MODEL_NAME})
    server.run(sockets=[sock])
    emit_event({"event": "exit", "code": 0})
    return 0

