"""The service process: bind the port at once, load in the background, log JSON events, drain on SIGTERM.

stdout carries one JSON object per line, for platforms to follow:
  {"event": "listening", "host", "port", "pid"}      the port accepts connections (model still loading)
  {"event": "ready", "port", "model", "load_s", ...}  loaded and warmed up: readiness answers 200
  {"event": "load_failed", "error", ...}              the model could not be loaded (e.g. bad weights)
  {"event": "draining", "in_flight"}                  SIGTERM/SIGINT received: not ready, finishing work
  {"event": "fault", ...}, {"event": "crash", ...}    fault hooks
  {"event": "exit", "code"}                           about to exit
Exit codes: 0 after a graceful drain, 3 when the model failed to load (ModelIntegrityError and the
like; readiness answers 503 with the error until then), the fault's code for a crash fault.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

import orjson
import uvicorn

from harness.config import ServiceConfig
from harness.errors import EXIT_OK, EXIT_RUNTIME, HarnessError
from harness.service.app import ServiceApp

__all__ = ["serve", "ServiceThread", "emit_event", "bind_socket"]

_TICK_S = 0.1


def emit_event(event: dict[str, Any]) -> None:
    """Write one JSON event line to stdout and flush it."""
    sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    sys.stdout.flush()


def bind_socket(host: str, port: int) -> socket.socket:
    """Return a listening-ready TCP socket bound to ``host:port`` (port 0: a free port); raise HarnessError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HarnessError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: ServiceApp, config: ServiceConfig) -> uvicorn.Config:
    def available(module: str) -> bool:
        try:
            __import__(module)
        except ImportError:
            return False
        return True

    return uvicorn.Config(
        app,
        loop="uvloop" if available("uvloop") else "asyncio",
        http="httptools" if available("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=max(1, int(config.grace_period_s)),
        timeout_keep_alive=5,
    )


class _Server(uvicorn.Server):
    """uvicorn's server with a readiness-first drain on SIGTERM/SIGINT and a chosen exit code."""

    def __init__(self, config: uvicorn.Config, app: ServiceApp, grace_period_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.grace_period_s = grace_period_s
        self.exit_code = EXIT_OK
        self.drain_requested = False
        self._drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # runs inside a signal handler: only set flags (no I/O); the next tick acts on them
        if self.drain_requested:
            self.should_exit = True  # a second signal: stop draining, shut down now
            return
        self.drain_requested = True
        self.app.engine.begin_drain()

    def request_exit(self, code: int) -> None:
        """Shut down at the next tick and exit with ``code`` (no drain)."""
        self.exit_code = code
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.grace_period_s
            emit_event({"event": "draining", "in_flight": self.app.metrics.in_flight, "grace_period_s": self.grace_period_s})
        if self._drain_deadline is not None and not self.should_exit:
            remaining = self._drain_deadline - time.monotonic()
            # stop waiting for in-flight requests a second early: closing connections needs a moment too
            if self.app.engine.idle() or remaining <= 1.0:
                if not self.app.engine.idle():
                    emit_event({"event": "drain_timeout", "in_flight": self.app.metrics.in_flight})
                # uvicorn's own shutdown (closing connections) gets what is left of the grace period
                self.config.timeout_graceful_shutdown = max(1, int(remaining))
                self.should_exit = True
        return await super().on_tick(counter)


def serve(config: ServiceConfig, *, started_at: float | None = None, exit_on_load_failure: bool = True) -> int:
    """Run the service in this process until drained (SIGTERM/SIGINT); return the exit code.

    Raises HarnessError if the port cannot be bound.
    """
    started_at = time.monotonic() if started_at is None else started_at
    sock = bind_socket(config.host, config.port)
    port = sock.getsockname()[1]
    server: _Server | None = None

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "ready":
            event = {"event": "ready", "port": port, **{k: v for k, v in event.items() if k != "event"}}
        emit_event(event)
        if event["event"] == "load_failed" and exit_on_load_failure and server is not None:
            print(f"harness serve: error: {event['error']}", file=sys.stderr, flush=True)
            server.request_exit(EXIT_RUNTIME)

    app = ServiceApp(config, on_event=on_event, started_at=started_at)
    server = _Server(_uvicorn_config(app, config), app, config.grace_period_s)
    emit_event({"event": "listening", "host": config.host, "port": port, "pid": os.getpid(), "model": config.model})
    server.run(sockets=[sock])
    emit_event({"event": "exit", "code": server.exit_code})
    return server.exit_code


class ServiceThread:
    """The service on a free port in a background thread of this process (for tests and tools).

    Use as a context manager; ``base_url`` is set once the port listens. `stop` drains like SIGTERM.
    """

    def __init__(self, config: ServiceConfig, started_timeout_s: float = 30.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.config = config
        self._sock = bind_socket(config.host, config.port)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://{config.host}:{self.port}"
        self.app = ServiceApp(config, on_event=self.events.append)
        self.server = _Server(_uvicorn_config(self.app, config), self.app, config.grace_period_s)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, name="service", daemon=True)
        self._started_timeout_s = started_timeout_s

    def __enter__(self) -> "ServiceThread":
        self._thread.start()
        deadline = time.monotonic() + self._started_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"service thread did not start listening within {self._started_timeout_s} s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drain(self) -> None:
        """Begin a graceful drain, as SIGTERM does."""
        self.server.handle_exit(signal.SIGTERM, None)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut the server down now and wait for its thread; close the socket."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()
