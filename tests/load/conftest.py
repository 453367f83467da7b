"""Fixtures for the load tests: a stand-in v2 server in its own process, always stopped afterwards."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

STANDIN = Path(__file__).with_name("standin_server.py")
START_TIMEOUT_S = 30.0


class StandinServer:
    """A running stand-in server: its base URL, and controls (stall, request count)."""

    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def stall(self, seconds: float) -> None:
        """Make every inference request in the next ``seconds`` wait until the stall ends."""
        body = json.dumps({"seconds": seconds}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/control/stall", data=body, method="POST"), timeout=5)

    def count(self) -> int:
        """Return how many inference requests the server has received."""
        with urllib.request.urlopen(f"{self.url}/control/count", timeout=5) as response:
            return int(json.loads(response.read())["count"])


def start_standin(*args: str, cpus: set[int] | None = None) -> StandinServer:
    """Start the stand-in server; return it once it listens. The caller must call `stop_standin`."""
    proc = subprocess.Popen([sys.executable, str(STANDIN), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    if not line.startswith(b"PORT "):
        stop_standin(proc)
        raise RuntimeError(f"stand-in server did not start (output {line!r})")
    return StandinServer(proc, int(line.split()[1]))


def stop_standin(server: StandinServer | subprocess.Popen) -> None:
    """Stop a stand-in server (its whole process group), waiting for it."""
    proc = server.proc if isinstance(server, StandinServer) else server
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _service_cpus() -> set[int] | None:
    cpus = sorted(os.sched_getaffinity(0))
    return set(cpus[:-1]) if len(cpus) > 1 else None


@pytest.fixture(scope="module")
def standin() -> StandinServer:
    """A fast stand-in server for the module's tests (pinned away from the generator's CPU)."""
    server = start_standin(cpus=_service_cpus())
    try:
        yield server
    finally:
        stop_standin(server)


@pytest.fixture
def standin_factory():
    """Start stand-in servers of the test's own (``factory("--delay-ms", "300")``); all stopped afterwards."""
    started: list[StandinServer] = []

    def factory(*args: str) -> StandinServer:
        server = start_standin(*args, cpus=_service_cpus())
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            stop_standin(server)


@pytest.fixture
def gen_cpus() -> list[int] | None:
    """The CPU the load generator and prober use in tests (the last one), None on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[-1]] if len(cpus) > 1 else None
