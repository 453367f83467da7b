"""Chaos Toolkit activities (python provider) for the drills: rollouts, scaling and load spikes.

Like `harness.chaos.activities`, every activity takes ``state_file`` and re-reads it; the ones that
change the deployment talk to it over its control channel (`harness.platforms.local.control`), whose
port and token the state file holds. A rollout is an *action*: its output carries ``time_s`` (when it
was asked for: the injection time the chaos run measures recovery from), the final phase
(``Completed``, ``RolledBack``, ``Failed``), and for a canary the analysis with the share of requests
the canary failed. The load activities (`spike_load`, `step_load`) send open-loop load of their own
(`harness.load.rate`) beside the run's background load, bounded in time, into
``<deployment workdir>/drills/``, and return `harness.measure.overload.overload_summary` figures.

Errors become `ActivityFailed` with a one-line message.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from harness.chaos.targets import POLL_S, failing, read_state_file, remember, replicas
from harness.slo import DEFAULT_P99_MS

__all__ = ["roll_out", "canary", "scale", "rollout_status", "wait_for_replicas", "spike_load", "step_load"]

_DRILL_DIR = "drills"
_MAX_IN_FLIGHT = 4096  # an overloaded service holds thousands waiting: they are measured, not refused by the generator


def _control(state_file: str, op: str, **fields: Any) -> dict[str, Any]:
    from harness.platforms.local.control import send_control

    return send_control(read_state_file(state_file), op, **fields)


@failing
def roll_out(state_file: str, spec_overlay: dict[str, Any] | None = None, strategy: str = "rolling",
             settings: dict[str, Any] | None = None, timeout_s: float = 180.0,
             expect_phase: str | None = None) -> dict[str, Any]:
    """Roll ``spec_overlay`` out with ``strategy`` (rolling, blue-green, canary) and wait until it ends.

    ``settings`` are the rollout's (`harness.platforms.local.rollout.RolloutRequest`: canary_weight,
    analysis_s, max_failed_share, progress_deadline_s, ...). Returns the rollout's final status with
    ``time_s``. Fails after ``timeout_s``, or when ``expect_phase`` is given and the rollout ended otherwise.
    """
    at = time.time()
    _control(state_file, "rollout", strategy=strategy, overlay=dict(spec_overlay or {}), **dict(settings or {}))
    remember({"name": None}, f"roll_out:{strategy}")
    deadline = time.monotonic() + float(timeout_s)
    while True:
        status = _control(state_file, "status").get("rollout") or {}
        if status.get("phase") not in (None, "Progressing"):
            break
        if time.monotonic() > deadline:
            raise ActivityFailed(f"the {strategy} rollout was still progressing after {timeout_s:g} s")
        time.sleep(POLL_S * 2)
    result = {**status, "time_s": at, "duration_s": round(time.time() - at, 3), "drill": "rollout"}
    if expect_phase is not None and status.get("phase") != expect_phase:
        raise ActivityFailed(f"the {strategy} rollout ended {status.get('phase')} ({status.get('why')}), "
                             f"expected {expect_phase}")
    return result


def canary(state_file: str, spec_overlay: dict[str, Any] | None = None, weight: int = 20, analysis_s: float = 10.0,
           max_failed_share: float = 0.05, max_latency_ms: float = DEFAULT_P99_MS, min_requests: int = 20,
           timeout_s: float = 180.0, expect_phase: str | None = None) -> dict[str, Any]:
    """Roll ``spec_overlay`` out as a canary taking ``weight`` percent of the requests for ``analysis_s``:
    promoted when at most ``max_failed_share`` of its requests failed or answered over ``max_latency_ms``,
    rolled back otherwise. Returns what `roll_out` returns (``analysis`` holds the shares)."""
    settings = {"canary_weight": weight, "analysis_s": analysis_s, "max_failed_share": max_failed_share,
                "max_latency_ms": max_latency_ms, "min_requests": min_requests}
    return roll_out(state_file, spec_overlay, "canary", settings, timeout_s, expect_phase)


@failing
def scale(state_file: str, replicas: int) -> dict[str, Any]:
    """Set the desired replica count (multi-active, no autoscaler); return the replicas added or removed."""
    at = time.time()
    answer = _control(state_file, "scale", replicas=replicas)
    remember({"name": None}, "scale")
    return {"replicas": replicas, "changed": answer.get("changed"), "time_s": at}


@failing
def rollout_status(state_file: str) -> dict[str, Any]:
    """Return the deployment's revision, desired replicas, traffic split, last rollout and autoscaler."""
    return _control(state_file, "status")


@failing
def wait_for_replicas(state_file: str, count: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until the deployment wants ``count`` replicas and has exactly that many, all Ready.

    Returns how long it took; fails after ``timeout_s`` naming what it has.
    """
    start = time.monotonic()
    while True:
        state = read_state_file(state_file)
        rows = replicas(state)
        ready = [r for r in rows if r.get("ready")]
        if state.get("desired_replicas", len(rows)) == count and len(rows) == count and len(ready) == count:
            return {"replicas": count, "waited_s": round(time.monotonic() - start, 3)}
        if time.monotonic() - start > timeout_s:
            raise ActivityFailed(f"{len(ready)} Ready of {len(rows)} replicas (desired {state.get('desired_replicas')}) "
                                 f"after {timeout_s:g} s; wanted exactly {count}")
        time.sleep(POLL_S * 2)


def _drill_dir(state: dict[str, Any], kind: str) -> Path:
    workdir = state.get("workdir")
    if not workdir:
        raise ActivityFailed("the state file names no workdir to write the drill's load into")
    directory = Path(workdir) / _DRILL_DIR / f"{kind}-{time.strftime('%H%M%S')}-{time.time_ns() % 10**6:06d}"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _send(state: dict[str, Any], directory: Path, rate_rps: float, duration_s: float, timeout_s: float,
          slo_latency_ms: float) -> dict[str, Any]:
    from harness.chaos.targets import served_model
    from harness.load.rate import run_rate
    from harness.measure.overload import overload_summary

    endpoint = state.get("endpoint")
    if not endpoint:
        raise ActivityFailed("the state file names no endpoint")
    result = run_rate(endpoint, directory, rate_rps=float(rate_rps), duration_s=float(duration_s),
                      model=served_model(endpoint), timeout_s=float(timeout_s), max_in_flight=_MAX_IN_FLIGHT)
    summary = overload_summary(result.records, slo_latency_ms=float(slo_latency_ms), duration_s=float(duration_s))
    return {**summary, "rate_rps": float(rate_rps), "schedule_kept": result.lag.kept, "records": str(directory)}


@failing
def spike_load(state_file: str, rate_rps: float, duration_s: float = 10.0, timeout_s: float = 5.0,
               slo_latency_ms: float = DEFAULT_P99_MS) -> dict[str, Any]:
    """Send an open-loop spike of ``rate_rps`` for ``duration_s`` through the endpoint (beside the run's load);
    return its goodput and the p99 of what was admitted (`harness.measure.overload`), and ``rate_limit``."""
    state = read_state_file(state_file)
    at = time.time()
    remember({"name": None}, "spike_load")
    figures = _send(state, _drill_dir(state, "spike"), rate_rps, duration_s, timeout_s, slo_latency_ms)
    return {**figures, "time_s": at, "rate_limit": state.get("rate_limit"), "drill": "overload"}


@failing
def step_load(state_file: str, steps: list[dict[str, float]], timeout_s: float = 5.0,
              slo_latency_ms: float = DEFAULT_P99_MS) -> dict[str, Any]:
    """Send open-loop load in ``steps`` (``[{"rate_rps": R, "duration_s": D}, ...]``, one after the other);
    return each step's figures and the replica counts seen after it."""
    if not steps or not all(isinstance(s, dict) and {"rate_rps", "duration_s"} <= set(s) for s in steps):
        raise ActivityFailed(f"steps={steps!r}: a list of {{\"rate_rps\": R, \"duration_s\": D}}")
    state = read_state_file(state_file)
    at = time.time()
    remember({"name": None}, "step_load")
    done = []
    for index, step in enumerate(steps):
        figures = _send(state, _drill_dir(state, f"step{index}"), step["rate_rps"], step["duration_s"], timeout_s,
                        slo_latency_ms)
        after = replicas(read_state_file(state_file))
        done.append({**figures, "replicas_after": len(after), "ready_after": sum(1 for r in after if r.get("ready"))})
    return {"steps": done, "time_s": at, "drill": "step-load"}
