"""The service process: bind the port at once, load in the background, log JSON events, drain on SIGTERM.

stdout carries one JSON object per line, for platforms to follow:
  {"event": "listening", "host", "port", "pid"}      the port accepts connections (model still loading)
  {"event": "ready", "port", "model", "load_s", ...}  loaded and warmed up: readiness answers 200
  {"event": "load_failed", "error", ...}              the model could not be loaded (e.g. bad weights)
  {"event": "draining", "in_flight"}                  SIGTERM/SIGINT received: not ready, finishing work
  {"event": "drain_timeout", "in_flight", "cut_off"}  the grace period is (all but) spent: the requests still
                                                      queued or running are answered 503 JSON; exit follows
  {"event": "fault", ...}, {"event": "crash", ...}    fault hooks
  {"event": "exit", "code"}                           about to exit
The process is gone by the end of ``grace_period_s`` after the signal (not rounded up: a platform
SIGKILLs then). Exit codes: 0 after a graceful drain, 3 when the model failed to load (ModelIntegrityError and the
like; readiness answers 503 with the error until then), the fault's code for a crash fault.
"""

from __future__ import annotations

import asyncio
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
from harness.service.wire import protocol_class

__all__ = ["serve", "ServiceThread", "emit_event", "bind_socket"]

_TICK_S = 0.1
_LISTEN_BACKLOG = 2048  # uvicorn's default backlog
_EXIT_RESERVE_S = 0.3  # of the grace period, for answering cut-off requests, closing connections and exiting


def emit_event(event: dict[str, Any]) -> None:
    """Write one JSON event line to stdout and flush it."""
    sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    sys.stdout.flush()


def bind_socket(host: str, port: int) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (port 0: a free port) and listening, so a connection made
    before the server loop runs waits in the backlog instead of being refused; raise HarnessError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HarnessError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(_LISTEN_BACKLOG)  # connections queue from here on, so "listening" is true when it is emitted
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
        http=protocol_class(),  # httptools or h11, answering what their parser refuses in JSON
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=max(0.01, config.grace_period_s),  # a float: uvicorn uses asyncio.timeout
        timeout_keep_alive=5,
    )


class _Server(uvicorn.Server):
    """uvicorn's server with a readiness-first drain on SIGTERM/SIGINT, bounded by the grace period.

    The grace period counts from the signal. Requests in flight get until ``grace_period_s`` less
    `exit_reserve_s` to finish; whatever is still queued or running then is answered 503 JSON (the
    batcher fails it), and the reserve is what closing connections and exiting may take, so the
    process is gone by the end of the grace period, not a rounded-up second later.
    """

    def __init__(self, config: uvicorn.Config, app: ServiceApp, grace_period_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.grace_period_s = grace_period_s
        self.exit_code = EXIT_OK
        self.drain_requested = False
        self.drain_started: float | None = None  # time.monotonic() of the signal
        self._drain_timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Event | None = None

    @property
    def exit_reserve_s(self) -> float:
        """Return the part of the grace period kept for answering cut-off requests, closing and exiting."""
        return min(_EXIT_RESERVE_S, self.grace_period_s / 2)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # runs inside a signal handler (or another thread, for ServiceThread): set flags only, no I/O;
        # the next tick (at most _TICK_S later) acts on them
        if self.drain_requested:
            # a second signal: stop draining, shut down now (requests still running are answered 503)
            self.config.timeout_graceful_shutdown = self.exit_reserve_s / 2  # type: ignore[assignment]
            self.should_exit = True
            return
        self.drain_started = time.monotonic()
        self.drain_requested = True
        self.app.engine.begin_drain()

    def request_exit(self, code: int) -> None:
        """Shut down at the next tick and exit with ``code`` (no drain)."""
        self.exit_code = code
        self.should_exit = True

    async def main_loop(self) -> None:
        # uvicorn's loop, but woken at once when the drain ends rather than at its next 0.1 s tick
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), _TICK_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self._drain_timer is None and not self.should_exit:
            self._begin_drain()
        if self._drain_timer is not None and not self.should_exit and self.app.engine.idle():
            self._finish_drain(timed_out=False)
        return await super().on_tick(counter)

    def _begin_drain(self) -> None:
        assert self.drain_started is not None
        emit_event({"event": "draining", "in_flight": self.app.metrics.in_flight, "grace_period_s": self.grace_period_s})
        cut_off_in_s = self.drain_started + self.grace_period_s - self.exit_reserve_s - time.monotonic()
        self._drain_timer = asyncio.get_running_loop().call_later(max(0.0, cut_off_in_s), self._finish_drain, True)

    def _finish_drain(self, timed_out: bool) -> None:
        if self.should_exit:
            return
        if timed_out and not self.app.engine.idle():
            in_flight = self.app.metrics.in_flight
            cut = self.app.engine.abort(f"service shutting down: request cut off at the end of the {self.grace_period_s:g} s grace period")
            emit_event({"event": "drain_timeout", "in_flight": in_flight, "cut_off": cut})
        assert self._drain_timer is not None and self.drain_started is not None
        self._drain_timer.cancel()
        # uvicorn's own shutdown (answers being written, connections closing) gets what is left before the reserve's
        # last part, the process exit; past it, uvicorn cancels the request tasks, and the app answers those 503 too
        left_s = self.drain_started + self.grace_period_s - time.monotonic() - self.exit_reserve_s / 2
        self.config.timeout_graceful_shutdown = max(0.01, left_s)  # type: ignore[assignment]  # uvicorn takes a float
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()


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
