"""Chaos Toolkit activities (python provider): network faults in the local platform's front balancer.

As Envoy's fault filter or Toxiproxy inject them, and needing nothing from the server, so they apply to
any system under test behind the balancer: added latency, a share of requests aborted with a chosen
status, a share of connections reset, one replica cut off from the balancer (see
`harness.platforms.local.netfaults`). Each activity takes ``state_file`` as those of
`harness.chaos.activities` do and asks the deployment over its control channel
(`harness.platforms.local.control.send_control`); the deployment records ``NetworkFaultInjected`` and
``NetworkFaultCleared`` events. Every fault is bounded by ``duration_s``: the balancer ends it then on
its own, even when the process that injected it is gone. A bad value fails the activity with one line
naming the field and the value.

Each action returns the fault (its ``id``, fields, ``time_s`` and ``expires_at_s``), with ``replica``
for a partition, so the run knows when and where it injected.
"""

from __future__ import annotations

import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import failing, last_injection, read_state_file, remember, replicas, select

__all__ = [
    "add_latency",
    "abort_requests",
    "reset_connections",
    "partition_replica",
    "clear_network_faults",
    "wait_for_network_faults_to_end",
]

_POLL_S = 0.1


def _inject(state_file: str, **fields: Any) -> dict[str, Any]:
    from harness.platforms.local.control import send_control

    state = read_state_file(state_file)
    if state.get("platform") != "local":
        raise ActivityFailed(f"platform={state.get('platform')!r}: network faults are injected in the local platform's balancer")
    fault = send_control(state, "network_fault", **fields)["fault"]
    if fault.get("replica") is None:
        last_injection.clear()
        last_injection.update({"replica": None, "time_s": fault["time_s"], "action": f"network_fault:{fields['kind']}"})
    return fault


@failing
def add_latency(state_file: str, delay_ms: float = 100.0, percent: float = 100.0, duration_s: float = 30.0,
                seed: int = 0) -> dict[str, Any]:
    """Delay ``percent`` of the requests through the balancer by ``delay_ms`` for ``duration_s``; return the fault."""
    return _inject(state_file, kind="latency", delay_ms=delay_ms, percent=percent, duration_s=duration_s, seed=seed)


@failing
def abort_requests(state_file: str, percent: float = 20.0, status: int = 503, duration_s: float = 30.0,
                   seed: int = 0) -> dict[str, Any]:
    """Answer ``percent`` of the requests with ``status`` from the balancer itself (no replica sees them)
    for ``duration_s``; return the fault."""
    return _inject(state_file, kind="abort", percent=percent, status=status, duration_s=duration_s, seed=seed)


@failing
def reset_connections(state_file: str, percent: float = 20.0, duration_s: float = 30.0, seed: int = 0) -> dict[str, Any]:
    """Close the connection of ``percent`` of the requests without an answer (a TCP reset) for ``duration_s``;
    return the fault."""
    return _inject(state_file, kind="reset", percent=percent, duration_s=duration_s, seed=seed)


@failing
def partition_replica(state_file: str, replica: str = "first-ready", duration_s: float = 30.0) -> dict[str, Any]:
    """Cut one replica (a name, ``first-ready`` or ``any``) off the balancer for ``duration_s``: no new request
    reaches it, the replica itself is untouched. Returns the fault with ``replica``."""
    state = read_state_file(state_file)
    if replica in ("first-ready", "any"):  # by readiness alone: an endpoint target has no process of ours
        rows = [r for r in replicas(state) if r.get("ready") or replica == "any"]
        if not rows:
            raise ActivityFailed(f"replica={replica!r}: no replica to cut off (replicas: "
                                 f"{', '.join(str(r.get('name')) for r in replicas(state)) or 'none'})")
        row = rows[0]
    else:
        row = select(state, replica)[0]
    fault = _inject(state_file, kind="partition", replica=row["name"], duration_s=duration_s)
    remember(row, "partition_replica")
    last_injection["time_s"] = fault["time_s"]
    return fault


@failing
def clear_network_faults(state_file: str, kind: str | None = None, replica: str | None = None) -> dict[str, Any]:
    """End the active network faults (of ``kind``, on ``replica``; all by default); return the ids ended."""
    from harness.platforms.local.control import send_control

    state = read_state_file(state_file)
    if not (state.get("control") or {}).get("port"):
        return {"cleared": [], "note": "no control channel: no network fault to clear"}
    fields = {k: v for k, v in (("kind", kind), ("replica", replica)) if v is not None}
    return {"cleared": send_control(state, "clear_network_faults", **fields)["cleared"]}


@failing
def wait_for_network_faults_to_end(state_file: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until the deployment has no active network fault (each ends after its duration); return how long
    that took. Fails after ``timeout_s`` naming the faults still active."""
    start = time.monotonic()
    while True:
        active = read_state_file(state_file).get("network_faults") or []
        if not active:
            return {"waited_s": round(time.monotonic() - start, 3)}
        if time.monotonic() - start > float(timeout_s):
            raise ActivityFailed(f"network faults still active after {float(timeout_s):g} s: "
                                 + ", ".join(str(f.get("id")) for f in active))
        time.sleep(_POLL_S)
