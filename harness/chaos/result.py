"""The result of one chaos run: what clients saw, what the platform did, and the SLA verdict.

`build_result` turns the measurements of a run (prober timeline, per-request records, platform
events, telemetry, the Chaos Toolkit journal) into the flat ``result.json`` mapping that the CLI,
the matrix and reports read. Definitions of the recovery figures are those of
`harness.measure.recovery`; the verdict is `harness.measure.sla`'s.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from harness.platforms.base import READY, Event

__all__ = [
    "RESULT_FILE",
    "serving_telemetry",
    "injection_from_journal",
    "refused_injections",
    "journal_summary",
    "drill_outputs",
    "build_result",
    "kill_label",
    "OUTCOME_ERROR",
    "OUTCOME_ABORTED",
]

RESULT_FILE = "result.json"


def serving_telemetry(rows: Iterable[Mapping[str, Any]], events: Sequence[Event]) -> list[Mapping[str, Any]]:
    """Return the telemetry rows of processes that were serving: each process's rows from its
    replica's first Ready event on. A process loading its model grows by hundreds of MB in a second
    or two; that is start-up, not the leak the memory-growth alert is for."""
    ready_times: dict[str, list[float]] = {}
    for event in events:
        if event.type == READY and event.replica:
            ready_times.setdefault(event.replica, []).append(event.time_s)
    first_seen: dict[tuple[Any, Any], float] = {}
    for row in rows:
        key = (row.get("replica"), row.get("pid"))
        first_seen[key] = min(first_seen.get(key, math.inf), float(row.get("time_s") or math.inf))
    kept = []
    for row in rows:
        if row.get("pid") is None:  # a GPU device row: always kept
            kept.append(row)
            continue
        started = first_seen[(row.get("replica"), row.get("pid"))]
        ready = [t for t in ready_times.get(str(row.get("replica")), []) if t >= started - 1.0]
        if ready and float(row["time_s"]) >= min(ready):
            kept.append(row)
    return kept


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def injection_from_journal(journal: Mapping[str, Any] | None) -> tuple[float | None, str | None]:
    """Return (when the method's first action started, the replica it reported hitting) from a journal."""
    for run in (journal or {}).get("run", []) or []:
        activity = run.get("activity") or {}
        if activity.get("type") != "action":
            continue
        output = run.get("output")
        replica = output.get("replica") if isinstance(output, Mapping) else None
        if replica is None and isinstance(output, Mapping) and isinstance(output.get("replicas"), Mapping):
            replica = next(iter(output["replicas"]), None)
        if replica is None and isinstance(output, list) and output and isinstance(output[0], str):
            replica = output[0]  # chaosk8s terminate_pods returns the names of the pods it deleted
        at = output.get("time_s") if isinstance(output, Mapping) and isinstance(output.get("time_s"), (int, float)) else None
        return (float(at) if at is not None else _epoch(run.get("start"))), replica
    return None, None


def refused_injections(journal: Mapping[str, Any] | None, configuration: Mapping[str, Any] | None = None) -> list[str]:
    """Return one finding per method action that an HTTP endpoint refused (status 400 or more).

    chaoslib records such an answer as a succeeded activity, so a fault hook that answered 403 (no
    or a wrong fault token) would read as a fault injected with no effect: a false pass.
    ``configuration`` is the run's resolved configuration (`harness.chaos.toolkit.resolved_configuration`),
    to name the URL it called.
    """
    refused = []
    for run in (journal or {}).get("run", []) or []:
        activity = run.get("activity") or {}
        output = run.get("output")
        provider = activity.get("provider") or {}
        if activity.get("type") != "action" or provider.get("type") != "http" or not isinstance(output, Mapping):
            continue
        status = output.get("status")
        if isinstance(status, int) and status >= 400:
            body = output.get("body")
            detail = body.get("error") if isinstance(body, Mapping) else body
            url = str(provider.get("url"))
            if configuration:
                from chaoslib import substitute

                url = str(substitute(url, dict(configuration), {}))
            refused.append(f"fault not injected: {activity.get('name')} ({provider.get('method', 'GET')} {url}) "
                           f"answered HTTP {status}" + (f": {str(detail)[:200]}" if detail else ""))
    return refused


def journal_summary(journal: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the journal's status, whether it deviated, and each activity's name and status."""
    if not journal:
        return {"journal_status": None, "deviated": None, "activities": [], "rollbacks": []}
    def runs(key: str) -> list[dict[str, Any]]:
        return [
            {"name": (r.get("activity") or {}).get("name"), "status": r.get("status"),
             **({"error": str(r["exception"][-1]).strip()} if r.get("exception") else {})}
            for r in journal.get(key, []) or []
        ]
    return {"journal_status": journal.get("status"), "deviated": journal.get("deviated"), "activities": runs("run"), "rollbacks": runs("rollbacks")}


def drill_outputs(journal: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Return the outputs of the method's drill activities (`harness.chaos.drills`: a rollout, a load spike
    or step), in order, each with the activity's name and status: the figures a drill's report quotes."""
    found = []
    for run in (journal or {}).get("run", []) or []:
        output = run.get("output")
        if isinstance(output, Mapping) and output.get("drill"):
            found.append({"activity": (run.get("activity") or {}).get("name"), "status": run.get("status"), **output})
    return found


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


OUTCOME_ERROR, OUTCOME_ABORTED = "error", "aborted"  # besides sla's met / not met / inconclusive


def kill_label(platform: Mapping[str, Any]) -> str:
    """Return how the report names the platform's kill in an alert's lead time ("OOM kill", "kill")."""
    return "OOM kill" if platform.get("kill_type") == "OOMKilled" or platform.get("oom_killed") else "kill"


def _budget_summary(verdict: Any, tier: str) -> dict[str, Any]:
    judgement = verdict.judgement(tier)
    worst = max(judgement.burns, key=lambda b: b["projected_high"], default=None)
    return {
        "error_budget_s": judgement.error_budget_s, "faults_per_period": judgement.faults_per_period,
        "projected_burn": judgement.projected_burn,
        "projected_burn_low": worst["projected_low"] if worst else None,
        "projected_burn_high": worst["projected_high"] if worst else None,
        "view": worst["view"] if worst else None,
    }


def build_result(
    *,
    experiment: str,
    fault: str,
    topology: str,
    profile: str,
    injected_at: float | None,
    target_replica: str | None,
    recovery: Any,
    verdict: Any,
    tier: str,
    journal: Mapping[str, Any] | None,
    behaviour_findings: list[str],
    aborted: bool,
    phase: str,
    extra: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the flat result mapping of one chaos run (``recovery``/``verdict`` may be None when
    the run ended before they could be measured: aborted, or no prober sample after the injection).

    ``outcome`` is the cell's verdict: `harness.measure.sla`'s met / not met / inconclusive for
    ``tier`` (budget burn, recovery time, alert checks), made "not met" by an injection the service
    refused (`refused_injections`) or a fault that did not behave as it claims (the test did not
    test what it says), "error" when nothing could be measured and "aborted" when interrupted.
    ``reasons`` says why whenever the outcome is not "met"; ``violations`` holds them when it is
    "not met" (empty otherwise).
    """
    from harness.measure.sla import MET, NOT_MET

    r = recovery.to_dict() if recovery is not None else {}
    v = verdict.to_dict() if verdict is not None else {}
    refused = refused_injections(journal, configuration)
    behaviour = [f"platform behaviour: {finding}" for finding in behaviour_findings]
    if verdict is not None:
        outcome, reasons = verdict.outcome(tier), verdict.reasons(tier)
    else:
        outcome, reasons = OUTCOME_ERROR, [f"no measurement: the run ended in phase {phase!r}"]
    if refused or (behaviour and outcome != OUTCOME_ERROR):
        outcome, reasons = NOT_MET, refused + behaviour + (reasons if outcome == NOT_MET else [])
    if aborted:
        outcome, reasons = OUTCOME_ABORTED, [f"interrupted in phase {phase!r}"] + reasons
    result = {
        "experiment": experiment,
        "fault": fault,
        "topology": topology,
        "profile": profile,
        "injected_at": injected_at,
        "target_replica": target_replica,
        "outcome": outcome,
        "reasons": reasons,
        "ttr_s": r.get("ttr_s"),
        "recovered": r.get("recovered"),
        "outage_s": r.get("outage_s"),
        "unavailability_s": r.get("unavailability_s"),
        "unavailability_open": r.get("unavailability_open"),
        "failed_requests": r.get("failed_requests"),
        "total_requests": r.get("total_requests"),
        "availability": r.get("availability"),
        "availability_source": r.get("availability_source"),
        "p99_ms_before": r.get("p99_ms_before"),
        "p99_ms_during": r.get("p99_ms_during"),
        "p99_ms_after": r.get("p99_ms_after"),
        "first_failure_s": r.get("first_failure_s"),
        "recovered_at_s": r.get("recovered_at_s"),
        "tier": tier,
        "tier_met": outcome == MET,
        "highest_tier_met": v.get("highest_tier_met"),
        "budget": _budget_summary(verdict, tier) if verdict is not None else None,
        "violations": reasons if outcome == NOT_MET else [],
        "alert_checks": list(v.get("alert_checks", [])),
        "alerts": [c["message"] for c in v.get("alert_checks", []) if c.get("status") != "missed"],
        "behaviour_seen": not behaviour_findings and not aborted and not refused,
        "behaviour_findings": behaviour_findings,
        **journal_summary(journal),
        "aborted": aborted,
        "phase": phase,
        "platform": r.get("platform", {}),
        "recovery": r,
        "verdict": v,
    }
    result.update(extra or {})
    return {k: _finite(val) for k, val in result.items()}


def token_figures(requests: Sequence[Any], injected_at: float | None, end_s: float | None, slo_latency_ms: float,
                  baseline_s: float) -> dict[str, Any]:
    """Return a generative load's token figures around the fault (``harness.measure.tokens``, exact, from the
    records): ``tokens_before`` over the requests sent in the ``baseline_s`` before the injection, ``tokens_after``
    over those sent from it until ``end_s`` (the end of the recovery window: not the teardown), ``tokens`` over both; empty when the records carry no tokens (a load that is not
    OpenAI-compatible) or nothing was injected."""
    from harness.measure.tokens import has_tokens, summarize_tokens
    from harness.slo import Slo

    if not requests or injected_at is None or not has_tokens(requests):
        return {}
    slo = Slo(p99_ms=slo_latency_ms)
    before = [r for r in requests if injected_at - baseline_s <= r.sent_s < injected_at]
    after = [r for r in requests if injected_at <= r.sent_s < (end_s if end_s is not None else math.inf)]
    return {key: summarize_tokens(part, slo).to_dict() if part else None
            for key, part in (("tokens", before + after), ("tokens_before", before), ("tokens_after", after))}
