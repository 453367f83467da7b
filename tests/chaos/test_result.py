"""Result assembly: start-up excluded from the leak alert, the online alert time, injection from the journal,
the cell's outcome."""

from __future__ import annotations

import pytest

from harness.chaos.result import injection_from_journal, journal_summary, serving_telemetry
from harness.measure.alerts import memory_growth_alerts
from harness.platforms.base import Event


def first_memory_alert_s(rows, threshold_mb_s, window_s):
    alerts = memory_growth_alerts(rows, threshold_mb_s, window_s)
    return min((a.fired_at_s for a in alerts), default=None)


def _rows(pid, start_s, rss_mb):
    return [{"time_s": start_s + 0.5 * i, "replica": "r0", "pid": pid, "rss_mb": value} for i, value in enumerate(rss_mb)]


def test_rows_before_a_process_is_ready_are_not_judged():
    loading = _rows(1, 100.0, [50, 300, 450, 460, 461, 461])  # a model load, then steady
    restarted = _rows(2, 110.0, [60, 400, 455, 455])
    events = [Event(101.2, 1.0, "Ready", "r0"), Event(111.0, 2.0, "Ready", "r0")]
    kept = serving_telemetry(loading + restarted + [{"time_s": 100.0, "replica": "gpu:0", "pid": None}], events)
    assert [(r["pid"], r["time_s"]) for r in kept if r["pid"]] == [(1, 101.5), (1, 102.0), (1, 102.5), (2, 111.0), (2, 111.5)]
    assert first_memory_alert_s(kept, 10.0, 60.0) is None
    assert first_memory_alert_s(loading, 10.0, 60.0) == 101.0  # what the start-up would have raised


def test_the_online_alert_fires_at_the_first_sample_over_the_threshold():
    leak = _rows(1, 0.0, [500, 500, 500, 500, 520, 560, 600, 640])  # flat for 1.5 s, then +80 MB/s
    at = first_memory_alert_s(leak, 10.0, 2.0)
    assert at is not None and 2.0 <= at <= 3.0


def test_the_injection_is_the_first_action_of_the_method():
    journal = {
        "status": "completed", "deviated": False,
        "run": [
            {"activity": {"type": "probe", "name": "p"}, "status": "succeeded", "start": "2026-01-01T00:00:00+00:00"},
            {"activity": {"type": "action", "name": "kill"}, "status": "succeeded", "start": "2026-01-01T00:00:01+00:00",
             "output": {"replica": "reference-1", "time_s": 1767225601.25}},
        ],
        "rollbacks": [{"activity": {"name": "clear"}, "status": "failed", "exception": ["Traceback", "ActivityFailed: no\n"]}],
    }
    assert injection_from_journal(journal) == (1767225601.25, "reference-1")
    del journal["run"][1]["output"]
    assert injection_from_journal(journal) == (1767225601.0, None)
    summary = journal_summary(journal)
    assert summary["rollbacks"] == [{"name": "clear", "status": "failed", "error": "ActivityFailed: no"}]
    assert injection_from_journal(None) == (None, None)


def test_chaosk8s_terminate_pods_output_names_the_deleted_pod():
    # chaosk8s.pod.actions.terminate_pods returns the names of the pods it deleted
    journal = {"run": [{"activity": {"type": "action", "name": "kill"}, "start": "2026-01-01T00:00:01",
                        "output": ["reference-7d9c-abcde", "reference-7d9c-fghij"]}]}
    assert injection_from_journal(journal) == (1767225601.0, "reference-7d9c-abcde")
    journal["run"][0]["output"] = []
    assert injection_from_journal(journal) == (1767225601.0, None)


def _http_journal(status, body):
    return {"experiment": {"configuration": {"endpoint": {"type": "env", "key": "HARNESS_ENDPOINT", "default": "http://d"}}},
            "run": [{"activity": {"type": "action", "name": "hang-one-pod",
                                  "provider": {"type": "http", "method": "POST", "url": "${endpoint}/v2/faults/hang"}},
                     "status": "succeeded", "start": "2026-01-01T00:00:01", "output": {"status": status, "body": body}}]}


def test_a_fault_hook_that_refused_is_a_failed_run_not_a_pass():
    from harness.chaos.result import build_result, refused_injections
    from harness.chaos.toolkit import resolved_configuration

    journal = _http_journal(403, {"error": "fault hooks are disabled: no token configured"})
    assert refused_injections(journal)[0].startswith("fault not injected: hang-one-pod (POST ${endpoint}/v2/faults/hang)")
    configuration = resolved_configuration(journal["experiment"], {"HARNESS_ENDPOINT": "http://svc:8000"})
    assert resolved_configuration(journal["experiment"], {})["endpoint"] == "http://d"  # its default
    refused = refused_injections(journal, configuration)
    assert refused == ["fault not injected: hang-one-pod (POST http://svc:8000/v2/faults/hang) answered HTTP 403: "
                       "fault hooks are disabled: no token configured"]
    assert refused_injections(_http_journal(200, {"fault": "hang"})) == []
    assert refused_injections(None) == []

    verdict = _passing_verdict()
    result = build_result(experiment="hang", fault="hang", topology="single", profile="smoke", injected_at=1.0,
                          target_replica=None, recovery=None, verdict=verdict, tier="single-point",
                          journal=journal, behaviour_findings=[], aborted=False, phase="done",
                          configuration=configuration)
    assert verdict.outcome("single-point") == "met"  # every tier met: the refusal must still fail the run
    assert result["outcome"] == "not met" and result["tier_met"] is False and result["behaviour_seen"] is False
    assert result["violations"] == refused == result["reasons"]


def _passing_verdict():
    from harness.measure.recovery import analyze_recovery
    from harness.measure.sla import evaluate_fault
    from harness.measure.sla_config import SlaConfig
    from harness.request_records import ProbeSample

    timeline = [ProbeSample(100.0 + i * 0.05, True, 10.0, 200) for i in range(200)]
    return evaluate_fault(analyze_recovery(timeline, injected_at_s=101.0, slo_latency_ms=500.0, stability_window_s=1.0),
                          config=SlaConfig(), telemetry=[])


def test_outcomes_of_a_cell():
    from harness.chaos.result import build_result

    common = dict(experiment="pod-kill", fault="pod-kill", topology="single", profile="smoke", injected_at=1.0,
                  target_replica="reference-0", recovery=None, tier="single-point", journal=None, phase="done")
    met = build_result(verdict=_passing_verdict(), behaviour_findings=[], aborted=False, **common)
    assert met["outcome"] == "met" and met["reasons"] == [] and met["violations"] == [] and met["tier_met"]
    assert met["budget"]["error_budget_s"] == pytest.approx(7.2 * 3600) and met["budget"]["projected_burn"] == 0.0
    wrong = build_result(verdict=_passing_verdict(), behaviour_findings=["expected Exited -> Started: no Started"],
                         aborted=False, **common)
    assert wrong["outcome"] == "not met" and wrong["reasons"] == ["platform behaviour: expected Exited -> Started: no Started"]
    nothing = build_result(verdict=None, behaviour_findings=[], aborted=False, **common)
    assert nothing["outcome"] == "error" and nothing["reasons"] == ["no measurement: the run ended in phase 'done'"]
    stopped = build_result(verdict=_passing_verdict(), behaviour_findings=[], aborted=True, **common)
    assert stopped["outcome"] == "aborted" and not stopped["tier_met"]
