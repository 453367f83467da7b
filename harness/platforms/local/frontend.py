"""The front balancer process as the supervisor runs it: start it, tell it its backends, read its stats, stop it.

The balancer itself (`harness.platforms.local.balancer`) is its own process; this is the supervisor's
handle on it. Its spec settings (topology, timeouts, body limit, retry, rate limit) become its flags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from harness.config import ServiceSpec
from harness.errors import DeploymentError
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.balancer import STATS_PATH
from harness.platforms.local.commands import log_tail
from harness.platforms.local.replica import HOST
from harness.processes import spawn, stop

__all__ = ["Frontend", "balancer_command"]

_log = logging.getLogger("harness.platforms.local")
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 3.0


def balancer_command(spec: ServiceSpec, python: str = sys.executable) -> list[str]:
    """Return the balancer's argv for ``spec`` (port 0: it reports the port it bound)."""
    balancer = spec.balancer
    command = [python, "-m", "harness.platforms.local.balancer", "--host", HOST, "--port", "0",
               "--topology", spec.topology, "--connect-timeout-s", f"{balancer.connect_timeout_s:g}",
               "--request-timeout-s", f"{balancer.request_timeout_s:g}",
               "--max-body-bytes", str(spec.service.max_body_bytes)]  # the replicas' limit: 413, not a reset
    if balancer.retry_on_connect_error:
        command.append("--retry-on-connect-error")
    if spec.rate_limit is not None:
        command += ["--rate-limit-rps", f"{spec.rate_limit.rate:g}", "--rate-limit-burst", str(spec.rate_limit.burst)]
    return command


class Frontend:
    """The balancer process of one deployment; ``endpoint`` is set once it has started."""

    def __init__(self, spec: ServiceSpec, log_dir: Path, python: str = sys.executable) -> None:
        self.spec = spec
        self.log_path = log_dir / "balancer.log"
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.endpoint = ""

    async def start(self) -> str:
        """Start the balancer and return its endpoint; raise DeploymentError (with its log) when it does not start."""
        self.proc = spawn(balancer_command(self.spec, self.python), log_path=self.log_path, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), _START_TIMEOUT_S)
            self.port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError) as exc:
            raise DeploymentError(f"the front balancer did not start: {exc or 'no port reported'}\n"
                                  f"{log_tail(self.log_path)}") from None
        self.endpoint = f"http://{HOST}:{self.port}"
        return self.endpoint

    def update(self, replicas: list[ReplicaStatus], weights: dict[int, int]) -> None:
        """Tell the balancer which replicas exist, which are Ready, and the traffic split between revisions."""
        backends = [{"name": s.name, "host": urlsplit(s.url).hostname or HOST if s.url else HOST, "port": s.port, "ready": s.ready, "revision": s.revision}
                    for s in replicas if s.port is not None]
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.send({"backends": backends, "weights": {str(k): v for k, v in weights.items()}})
        except DeploymentError as exc:
            _log.error("local platform: cannot update the balancer: %s", exc)

    def send(self, message: dict) -> None:
        """Write one control line to the balancer (backends, weights, a network fault); raise DeploymentError
        when it is not running or its control channel is closed."""
        if self.proc is None or self.proc.poll() is not None:
            raise DeploymentError("the front balancer is not running")
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise DeploymentError(f"cannot reach the front balancer's control channel: {exc}") from None

    def stats(self) -> dict:
        """Return the balancer's counters (per replica, no_ready, retries, rate limit) from /_balancer/stats."""
        with urllib.request.urlopen(self.endpoint + STATS_PATH, timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        """Close its control channel (it stops) and wait; terminate it if it lingers."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # end of its control channel: it stops
        except OSError:
            pass
        stop(self.proc, grace_s=_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """Forced teardown: kill it now and close its pipes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            stop(self.proc, grace_s=0)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def describe(self) -> dict:
        """Return the balancer's pid and port for the state file."""
        return {"pid": self.proc.pid if self.proc else None, "port": self.port}
