"""HTTP probes with Kubernetes semantics: one GET per period on a fresh connection, 200-399 is success.

`ProbeTracker` holds the consecutive-result counters a kubelet keeps per probe and says when a
threshold is crossed; the supervisor turns those transitions into events and actions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from harness.config import Probe

__all__ = ["ProbeResult", "http_probe", "ProbeTracker"]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # "HTTP 200", "HTTP 503", "timeout after 1 s", "connection refused"
    duration_s: float


async def http_probe(host: str, port: int, path: str, timeout_s: float) -> ProbeResult:
    """Return the result of one HTTP GET probe (connect + status line within ``timeout_s``). Never raises."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: harness-probe\r\n"
                "Accept: */*\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return ProbeResult(False, "no HTTP response", loop.time() - start)
        status = int(parts[1])
        return ProbeResult(200 <= status < 400, f"HTTP {status}", loop.time() - start)
    except TimeoutError:
        return ProbeResult(False, f"timeout after {timeout_s:g} s", loop.time() - start)
    except ConnectionRefusedError:
        return ProbeResult(False, "connection refused", loop.time() - start)
    except OSError as exc:
        return ProbeResult(False, f"connection error: {exc.strerror or exc}", loop.time() - start)
    finally:
        if writer is not None:
            writer.close()


class ProbeTracker:
    """Consecutive successes/failures of one probe; ``record`` returns the new verdict when it flips.

    The verdict starts as ``initial`` (False for readiness and startup, True for liveness: a container
    is alive until its liveness probe has failed failureThreshold times in a row).
    """

    def __init__(self, probe: Probe, initial: bool) -> None:
        self.probe = probe
        self.verdict = initial
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool) -> bool | None:
        """Count one result; return the new verdict if it changed, else None."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.verdict and self.successes >= self.probe.success_threshold:
                self.verdict = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.verdict and self.failures >= self.probe.failure_threshold:
                self.verdict = False
                return False
        return None
