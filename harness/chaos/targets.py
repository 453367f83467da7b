"""What the local-platform chaos activities act on: the deployment's state file and its replicas.

The helpers behind `harness.chaos.activities`: read the state file (again on every call: replicas
restart, pids and readiness change), choose a replica by name or role, guard against signalling a
reused pid, remember what the last action hit, and talk to the service through
`harness.service.client`. Everything here is light to import (no torch, no locust), since Chaos
Toolkit imports the activities in its own process; errors become `ActivityFailed`.
"""

from __future__ import annotations

import functools
import os
import signal as signals
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from chaoslib.exceptions import ActivityFailed

from harness.errors import HarnessError
from harness.processes import signal_leader

__all__ = [
    "continue_frozen",
    "HTTP_TIMEOUT_S",
    "POLL_S",
    "last_injection",
    "failing",
    "read_state_file",
    "replicas",
    "select",
    "remember",
    "signal_number",
    "signal_replica",
    "live_pid",
    "memory_limit_mb",
    "service_client",
    "served_model",
    "timed_infer",
]

HTTP_TIMEOUT_S = 5.0
POLL_S = 0.1
_PID_START_SLACK_S = 5.0  # a replica's recorded start vs its process's create time (pid reuse guard)

# What the last action of this process hit: {"replica": name, "time_s": epoch, "action": name}.
last_injection: dict[str, Any] = {}

T = TypeVar("T")


def failing(func: Callable[..., T]) -> Callable[..., T]:
    """Turn harness errors and OS errors into ActivityFailed with the message, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except ActivityFailed:
            raise
        except (HarnessError, OSError, ValueError, KeyError, TypeError) as exc:
            raise ActivityFailed(f"{func.__name__}: {exc}") from None

    return wrapper


# --- the state file ---------------------------------------------------------------------------


def read_state_file(state_file: str) -> dict[str, Any]:
    """Return the deployment's state file as a dict; raise ActivityFailed/DeploymentError if unreadable."""
    from harness.platforms.base import read_state

    if not state_file:
        raise ActivityFailed("no state file given (set HARNESS_STATE_FILE to the file `harness up --state-file` writes)")
    return read_state(state_file)


def replicas(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the replica rows of a state file, in order (the first is the active-standby primary)."""
    return [row for row in state.get("replicas", []) if isinstance(row, dict)]


def select(state: dict[str, Any], replica: str, *, allow_all: bool = False) -> list[dict[str, Any]]:
    """Return the rows ``replica`` names: a name, "first-ready", "any", "injected" or ("all" when
    ``allow_all``); raise ActivityFailed listing the replicas when none fits."""
    rows = replicas(state)
    names = ", ".join(f"{r.get('name')} ({r.get('state')}, ready={r.get('ready')})" for r in rows) or "none"
    if replica == "all":
        if not allow_all:
            raise ActivityFailed("replica='all' is only accepted by fault and clear actions")
        return [r for r in rows if r.get("url")]
    if replica == "injected":
        replica = last_injection.get("replica") or ""
        if not replica:
            raise ActivityFailed("replica='injected' but no action of this run has hit a replica yet")
    if replica == "first-ready":
        chosen = [r for r in rows if r.get("ready") and r.get("pid")]
        if not chosen:
            raise ActivityFailed(f"no Ready replica to target (replicas: {names})")
        return chosen[:1]
    if replica == "any":
        chosen = [r for r in rows if r.get("pid")]
        if not chosen:
            raise ActivityFailed(f"no running replica to target (replicas: {names})")
        return chosen[:1]
    chosen = [r for r in rows if r.get("name") == replica]
    if not chosen:
        raise ActivityFailed(f"no replica named {replica!r} (replicas: {names})")
    return chosen


def remember(row: dict[str, Any], action: str) -> float:
    """Record that ``action`` hit ``row`` now (for "injected" and for probes judging what followed); return the time."""
    now = time.time()
    last_injection.clear()
    last_injection.update({"replica": row.get("name"), "time_s": now, "action": action})
    return now


def signal_number(name: str | int) -> int:
    """Return the number of a signal given as "SIGKILL", "kill" or 9; raise ActivityFailed for anything else."""
    if isinstance(name, int):
        return name
    text = str(name).upper()
    text = text if text.startswith("SIG") else "SIG" + text
    number = getattr(signals, text, None)
    if not isinstance(number, int):
        raise ActivityFailed(f"signal={name!r}: not a signal name (use SIGKILL, SIGTERM, ...)")
    return int(number)


# what a container runtime does to every process of a container (docker kill, pause, unpause); any
# other signal it delivers to the main process (PID 1), whose server handles it
_WHOLE_REPLICA_SIGNALS = frozenset({signals.SIGKILL, signals.SIGSTOP, signals.SIGCONT})


def signal_replica(pid: int, number: int) -> None:
    """Send signal ``number`` to the replica whose main process is ``pid``, as a container runtime would.

    SIGKILL, SIGSTOP and SIGCONT reach every process of the replica: its process group, which the local
    platform starts each replica leading (`harness.processes.spawn`), so a server's worker processes
    (LitServe's inference worker, uvicorn's workers) die or freeze with it rather than keep its port and
    answer. Any other signal (SIGTERM) goes to the main process alone, as the runtime delivers it to
    PID 1 and the server handles it. A pid that does not lead its own group gets every signal alone.
    Raises ProcessLookupError when the process is gone.
    """
    if number in _WHOLE_REPLICA_SIGNALS:
        signal_leader(pid, number)
    else:
        os.kill(pid, number)


def live_pid(row: dict[str, Any]) -> int:
    """Return the replica's pid after checking it is still that replica's process (not a reused pid)."""
    import psutil

    pid = row.get("pid")
    if not pid:
        raise ActivityFailed(f"replica {row.get('name')} has no running process (state {row.get('state')})")
    try:
        created_s = psutil.Process(int(pid)).create_time()
    except psutil.NoSuchProcess:
        raise ActivityFailed(f"replica {row.get('name')}: process {pid} is gone (the state file is stale)") from None
    started_s = row.get("started_s")
    if not isinstance(started_s, (int, float)):
        raise ActivityFailed(f"replica {row.get('name')}: the state file has no started_s to check pid {pid} against; not signalling it")
    if abs(created_s - started_s) > _PID_START_SLACK_S:
        raise ActivityFailed(f"replica {row.get('name')}: pid {pid} now belongs to another process; not signalling it")
    return int(pid)


def memory_limit_mb(row: dict[str, Any]) -> float | None:
    """Return the memory limit (MiB) of a replica's cgroup (v1 or v2), or None when it has none."""
    for directory in str(row.get("cgroup") or "").split(","):
        for name in ("memory.limit_in_bytes", "memory.max"):
            path = Path(directory.strip()) / name
            try:
                text = path.read_text().strip()
            except OSError:
                continue
            if text and text != "max" and int(text) < 2**60:
                return int(text) / 2**20
    return None


def service_client():
    """Return `harness.service.client` (imported on first use: the module stays light to import)."""
    from harness.service import client

    return client


_models: dict[str, str] = {}  # endpoint -> the model it serves, found once per endpoint


def served_model(endpoint: str) -> str:
    """Return the model the deployment serves (the repository index extension), else the default."""
    from harness.config import DEFAULT_MODEL

    if endpoint not in _models:
        try:
            status, index = service_client().request_json("POST", f"{endpoint.rstrip('/')}/v2/repository/index", {}, timeout_s=2.0)
        except HarnessError:
            return DEFAULT_MODEL  # not answering now; the request itself will say so
        names = [m.get("name") for m in index if isinstance(m, dict)] if status == 200 and isinstance(index, list) else []
        _models[endpoint] = names[0] if names else DEFAULT_MODEL
    return _models[endpoint]


def timed_infer(endpoint: str, timeout_s: float, protocol: dict[str, Any] | None = None) -> tuple[bool, float]:
    """Return (succeeded, latency in ms) of one request through ``endpoint``: in the target's ``protocol``
    when given (the state file's ``protocol``: a team's server is asked what its load asks, and its
    protocol's success rule judges the answer), else an inference request to the reference service's model."""
    if protocol is not None:
        return _timed_protocol_request(endpoint, protocol, timeout_s)
    from harness.service.registry import example_request

    model = served_model(endpoint)
    start = time.perf_counter()
    try:
        status, _ = service_client().infer(endpoint, model, example_request(model), timeout_s=timeout_s)
        ok = status == 200
    except HarnessError:
        ok = False
    return ok, (time.perf_counter() - start) * 1000


_adapters: dict[tuple[str, str], Any] = {}  # (endpoint, protocol) -> its adapter, built once (v2 metadata read once)


def _timed_protocol_request(endpoint: str, protocol: dict[str, Any], timeout_s: float) -> tuple[bool, float]:
    import http.client
    import json
    from urllib.parse import urlsplit

    start = time.perf_counter()
    key = (endpoint, json.dumps(protocol, sort_keys=True))
    try:
        if key not in _adapters:
            from harness.load.protocols import build_adapter, protocol_settings
            from harness.load.protocols.oip_v2 import with_metadata

            _adapters[key] = build_adapter(with_metadata(protocol_settings(dict(protocol)), endpoint))
    except HarnessError:  # its oip-v2 tensors cannot be read from it now: it does not answer as it should
        return False, (time.perf_counter() - start) * 1000
    request = _adapters[key].request(0)
    address = urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port or 80, timeout=timeout_s)
    status, body, error = 0, b"", ""
    try:
        connection.request(request.method, request.path, body=request.body or None, headers=request.headers)
        response = connection.getresponse()
        status = response.status
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    latency_ms = (time.perf_counter() - start) * 1000
    return _adapters[key].read(status, [(latency_ms, body)], latency_ms, error).ok, latency_ms


def continue_frozen(row: dict[str, Any]) -> None:
    """SIGCONT a replica's processes, in case a freeze was cut short without continuing them (harmless otherwise)."""
    try:
        pid = live_pid(row)  # never a reused pid: continuing someone's stopped job is not ours to do
    except ActivityFailed:
        return
    try:
        signal_replica(pid, signals.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass
