"""Rollouts on the local platform: rolling update, blue-green and canary, as a Deployment controller
(and Argo Rollouts, for the last two) would run them. Every coroutine runs on the supervisor's loop.

- **rolling**: the Kubernetes algorithm. With ``maxSurge`` S and ``maxUnavailable`` U (as counts of
  the desired replicas N, `harness.policies.Strategy.bounds`), new replicas are added while there
  are fewer than N + S in all, and old ones removed while at least N - U stay Ready (unhealthy old
  ones first); a new replica counts once Ready (readiness-gated). N=2, S=1, U=0 replaces one replica
  at a time and never serves from fewer than two; ``single`` (S=0, U=1) stops its replica first.
- **blue-green**: N new (green) replicas start while every request still goes to the old (blue)
  ones; once all are Ready the whole traffic switches at once, and blue is removed after
  ``scale_down_delay_s``.
- **canary**: ``canary_replicas`` new replicas get ``canary_weight`` percent of the requests for
  ``analysis_s``; the analysis compares what each side answered (`judge_canary`). Passed: promoted
  (the rest replaced as a rolling update). Failed: rolled back (the canary removed, all traffic back).

A rollout whose new replicas make no progress (none turns Ready) for ``progressDeadlineSeconds`` has
failed; with ``auto_rollback`` (default) the old revision is restored. Events: ``RolloutStarted``,
``ScalingReplicaSet``, ``TrafficShifted``, ``AnalysisCompleted``, ``RolloutCompleted`` or
``RolloutRolledBack``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.platforms import base as ev
from harness.platforms.local.fleet import Fleet
from harness.platforms.local.routing import LATENCY_BOUNDS_MS
from harness.slo import DEFAULT_P99_MS

__all__ = ["STRATEGIES", "RolloutRequest", "RolloutFailed", "Rollout", "judge_canary"]

STRATEGIES = ("rolling", "blue-green", "canary")
_TICK_S = 0.2


class RolloutRequest(BaseModel):
    """What a rollout changes (``overlay`` on the current spec) and how (``strategy`` and its settings)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["rolling", "blue-green", "canary"] = "rolling"
    overlay: dict[str, Any] = Field(default_factory=dict)
    progress_deadline_s: float | None = Field(None, gt=0, le=86400)  # default: the spec's progressDeadlineSeconds
    auto_rollback: bool = True
    scale_down_delay_s: float = Field(1.0, ge=0, le=3600)  # blue-green: blue kept this long after the switch
    canary_replicas: int = Field(1, ge=1, le=64)
    canary_weight: int = Field(20, ge=1, le=99)  # percent of the requests
    analysis_s: float = Field(10.0, gt=0, le=3600)
    max_failed_share: float = Field(0.05, ge=0, le=1)  # of the canary's requests: failed or over the latency bound
    max_latency_ms: float = Field(DEFAULT_P99_MS, gt=0, le=600_000)
    min_requests: int = Field(20, ge=1, le=1_000_000)  # fewer canary requests: the analysis waits (up to 3x analysis_s)


class RolloutFailed(Exception):
    """The rollout could not finish (no progress before the deadline, a canary that failed its analysis)."""


def _answer_counts(backends: list[dict], revision: int, max_latency_ms: float) -> tuple[int, int]:
    """Return (answers, failed) of a revision's backends: failed = not 2xx, or slower than ``max_latency_ms``."""
    slow_from = next((i + 1 for i, bound in enumerate(LATENCY_BOUNDS_MS) if bound >= max_latency_ms), len(LATENCY_BOUNDS_MS))
    answers = failed = 0
    for backend in backends:
        if int(backend.get("revision") or 1) != revision:
            continue
        statuses = backend.get("statuses") or {}
        total = sum(statuses.values())
        ok = statuses.get("2xx", 0)
        slow = sum((backend.get("latency_buckets") or [])[slow_from:])
        answers += total
        failed += min(total, (total - ok) + slow)
    return answers, failed


def judge_canary(before: list[dict], after: list[dict], *, stable: int, canary: int,
                 request: RolloutRequest) -> dict[str, Any]:
    """Return the canary analysis from two balancer snapshots (its ``backends``): each side's answers and
    failures (not 2xx, or over ``max_latency_ms``: buckets whose bound reaches it count as in time),
    the canary's failed share, and ``passed``: at least ``min_requests`` canary answers with a failed
    share within ``max_failed_share``."""
    bound = request.max_latency_ms
    c_total, c_failed = (a - b for a, b in zip(_answer_counts(after, canary, bound), _answer_counts(before, canary, bound)))
    s_total, s_failed = (a - b for a, b in zip(_answer_counts(after, stable, bound), _answer_counts(before, stable, bound)))
    share = c_failed / c_total if c_total else None
    enough = c_total >= request.min_requests
    passed = enough and share is not None and share <= request.max_failed_share
    return {
        "passed": passed, "enough_requests": enough, "canary_requests": c_total, "canary_failed": c_failed,
        "canary_failed_share": share, "stable_requests": s_total, "stable_failed": s_failed,
        "stable_failed_share": s_failed / s_total if s_total else None,
        "share_of_all_failed_by_canary": c_failed / (c_total + s_total) if c_total + s_total else None,
        "max_failed_share": request.max_failed_share, "max_latency_ms": bound, "min_requests": request.min_requests,
    }


class Rollout:
    """One rollout of ``fleet`` to a new revision; `run` drives it to completed or rolled back."""

    def __init__(self, fleet: Fleet, request: RolloutRequest, *, new_revision: int, desired: int,
                 bounds: tuple[int, int], deadline_s: float, balancer_stats: Callable[[], Awaitable[dict]]) -> None:
        self.fleet = fleet
        self.request = request
        self.old = fleet.current
        self.new = new_revision
        self.desired = desired
        self.surge, self.unavailable = bounds
        self.deadline_s = deadline_s
        self._balancer_stats = balancer_stats
        self.status: dict[str, Any] = {
            "strategy": request.strategy, "revision": new_revision, "from_revision": self.old, "phase": "Progressing",
            "started_s": time.time(), "ended_s": None, "why": None, "analysis": None, "max_surge": self.surge,
            "max_unavailable": self.unavailable,
        }

    def _emit(self, type_: str, reason: str, message: str, **extra: Any) -> None:
        self.fleet.events.emit(type_, None, reason, message, revision=self.new, strategy=self.request.strategy, **extra)

    async def run(self) -> dict[str, Any]:
        """Run the rollout; return its status (phase ``Completed`` or ``RolledBack``/``Failed``). Never raises
        for a failed rollout: that is its outcome."""
        self._emit(ev.ROLLOUT_STARTED, "RolloutStarted", f"{self.request.strategy} rollout of revision {self.new} "
                   f"(from {self.old}, {self.desired} replicas, maxSurge {self.surge}, maxUnavailable {self.unavailable})",
                   from_revision=self.old, overlay=self.request.overlay)
        try:
            if self.request.strategy == "rolling":
                await self._rolling(self.new)
            elif self.request.strategy == "blue-green":
                await self._blue_green()
            else:
                await self._canary()
        except RolloutFailed as exc:
            self.status["why"] = str(exc)
            await self._give_up(str(exc))
            return self.status
        await self.fleet.settle()
        self.fleet.current = self.new
        self.status.update(phase="Completed", ended_s=time.time())
        self._emit(ev.ROLLOUT_COMPLETED, "RolloutCompleted", f"every replica runs revision {self.new}")
        return self.status

    async def _give_up(self, why: str) -> None:
        if not self.request.auto_rollback:
            self.status.update(phase="Failed", ended_s=time.time())
            self._emit(ev.ROLLOUT_ROLLED_BACK, "RolloutFailed", f"rollout of revision {self.new} failed: {why} "
                       f"(auto_rollback off: left as it is)", why=why, rolled_back=False)
            return
        if self.fleet.weights:
            self.fleet.set_weights({self.old: 100}, "rollback: every request to the old revision")
        for replica in self.fleet.live(self.new):
            self.fleet.stop_in_background(replica, "rollout")
        await self.fleet.scale(self.old, self.desired, "rollback")
        await self._wait(lambda: len(self.fleet.ready(self.old)) >= self.desired, "the old revision Ready again",
                         revision=self.old)
        await self.fleet.settle()
        if self.fleet.weights:
            self.fleet.set_weights({}, "rollback done")
        self.fleet.current = self.old
        self.status.update(phase="RolledBack", ended_s=time.time())
        self._emit(ev.ROLLOUT_ROLLED_BACK, "RolloutRolledBack", f"rollout of revision {self.new} rolled back to "
                   f"{self.old}: {why}", why=why, rolled_back=True, to_revision=self.old)

    async def _wait(self, done: Callable[[], bool], what: str, revision: int | None = None) -> None:
        """Wait until ``done()``; raise RolloutFailed when no replica of ``revision`` (default: the new one)
        turns Ready for the progress deadline."""
        revision = self.new if revision is None else revision
        progress_at, ready_seen = time.monotonic(), len(self.fleet.ready(revision))
        while not done():
            await self.fleet.wait_change(_TICK_S)
            ready_now = len(self.fleet.ready(revision))
            if ready_now > ready_seen:
                progress_at = time.monotonic()
            ready_seen = ready_now
            if time.monotonic() - progress_at > self.deadline_s:
                raise RolloutFailed(f"no progress for {self.deadline_s:g} s (progressDeadlineSeconds) waiting for {what}")

    # ----- strategies -------------------------------------------------------------------------------

    def _rolling_step(self, new: int) -> bool:
        """Scale the new revision up and the old ones down as far as maxSurge and maxUnavailable allow; return
        whether anything was started or stopped (the Deployment controller's reconcile, one pass)."""
        fleet, n = self.fleet, self.desired
        acted = False
        new_live = fleet.live(new)
        old_live = [r for r in fleet.live() if r.revision != new]
        room = n + self.surge - len(new_live) - len(old_live)
        for _ in range(max(0, min(room, n - len(new_live)))):
            fleet.start_replica(new)
            acted = True
        min_available = n - self.unavailable
        new_unavailable = len([r for r in fleet.live(new) if not r.ready])
        budget = len(fleet.live()) - min_available - new_unavailable
        for replica in [r for r in old_live if not r.ready][: max(0, budget)]:  # unhealthy old replicas first
            fleet.stop_in_background(replica, "rollout")
            budget -= 1
            acted = True
        spare = min(budget, len(fleet.ready()) - min_available)
        for replica in [r for r in old_live if r.ready and not r.draining][: max(0, spare)]:
            fleet.stop_in_background(replica, "rollout")
            acted = True
        return acted

    async def _rolling(self, new: int) -> None:
        fleet, n = self.fleet, self.desired

        def finished() -> bool:
            return not [r for r in fleet.live() if r.revision != new] and len(fleet.ready(new)) >= n

        def position() -> tuple[int, int]:
            return len(fleet.ready(new)), len([r for r in fleet.live() if r.revision != new])

        progress_at, seen = time.monotonic(), position()
        while not finished():
            acted = self._rolling_step(new)
            if acted or position() != seen:  # progress: a replica started, stopped or turned Ready
                progress_at, seen = time.monotonic(), position()
            elif time.monotonic() - progress_at > self.deadline_s:
                raise RolloutFailed(f"no progress for {self.deadline_s:g} s (progressDeadlineSeconds) waiting for "
                                    f"{n} Ready replica(s) of revision {new}")
            if not acted:
                await fleet.wait_change(_TICK_S)
        self._emit(ev.SCALING_REPLICA_SET, "ScalingReplicaSet", f"revision {new} has {n} Ready replica(s); old revisions 0",
                   replicas=n)

    async def _blue_green(self) -> None:
        fleet = self.fleet
        fleet.set_weights({self.old: 100}, "blue-green: the new revision gets nothing until it is switched to")
        await fleet.scale(self.new, self.desired, "blue-green: the green set")
        await self._wait(lambda: len(fleet.ready(self.new)) >= self.desired, f"{self.desired} green replica(s) Ready")
        fleet.set_weights({self.new: 100}, "blue-green: switched")
        await asyncio.sleep(self.request.scale_down_delay_s)
        for replica in [r for r in fleet.live() if r.revision != self.new]:
            fleet.stop_in_background(replica, "rollout")
        await fleet.settle()
        fleet.set_weights({}, "blue-green: the old revision is gone")

    async def _canary(self) -> None:
        fleet, request = self.fleet, self.request
        fleet.set_weights({self.old: 100}, "canary: starting the canary")
        await fleet.scale(self.new, request.canary_replicas, "canary")
        await self._wait(lambda: len(fleet.ready(self.new)) >= request.canary_replicas, "the canary Ready")
        before = (await self._balancer_stats()).get("backends", [])
        fleet.set_weights({self.old: 100 - request.canary_weight, self.new: request.canary_weight}, "canary: analysis")
        started = time.monotonic()
        while True:
            await asyncio.sleep(min(request.analysis_s, 0.5))
            analysis = judge_canary(before, (await self._balancer_stats()).get("backends", []), stable=self.old,
                                    canary=self.new, request=request)
            elapsed = time.monotonic() - started
            if elapsed >= request.analysis_s and (analysis["enough_requests"] or elapsed >= 3 * request.analysis_s):
                break
        analysis["analysis_s"] = round(elapsed, 3)
        analysis["weight"] = request.canary_weight
        self.status["analysis"] = analysis
        share = analysis["canary_failed_share"]
        verdict = "passed" if analysis["passed"] else "failed"
        self._emit(ev.ANALYSIS_COMPLETED, "AnalysisCompleted", f"canary analysis {verdict}: {analysis['canary_failed']} of "
                   f"{analysis['canary_requests']} canary answers failed or were over {request.max_latency_ms:g} ms"
                   + (f" ({share:.1%}, limit {request.max_failed_share:.1%})" if share is not None else ""), **analysis)
        if not analysis["passed"]:
            why = ("too few canary requests to judge" if not analysis["enough_requests"]
                   else f"the canary failed {share:.1%} of its requests (limit {request.max_failed_share:.1%})")
            raise RolloutFailed(why)
        fleet.set_weights({}, "canary: promoted")
        await self._rolling(self.new)
