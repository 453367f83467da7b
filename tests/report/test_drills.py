"""The drills in the chaos section: replicas and traffic share over time from the events, the autoscaler's
decisions with the time until the added replicas were Ready, and the drills' own figures."""

from __future__ import annotations

import json
from pathlib import Path

from harness.jsonfile import read_json, write_json
from harness.report import drills, frames
from harness.report.sections import collect_sections

from .conftest import T0, write_chaos

INJECTED = T0 + 10.0


def _event(at: float, type_: str, replica: str | None = None, **extra) -> dict:
    return {"time_s": INJECTED + at, "mono_s": at, "type": type_, "replica": replica, "reason": type_, "message": "",
            "exit_code": None, **extra}


AUTOSCALE = [
    _event(-9, "Scheduled", "reference-0", revision=1), _event(-8, "Ready", "reference-0"),
    _event(1.0, "SuccessfulRescale", from_replicas=1, replicas=2, metric="rps", value=90.0, target=50.0),
    _event(1.0, "ScalingReplicaSet", revision=1, replicas=2, from_replicas=1, names=["reference-1"]),
    _event(1.1, "Scheduled", "reference-1", revision=1), _event(4.6, "Ready", "reference-1"),
    _event(20.0, "SuccessfulRescale", from_replicas=2, replicas=1, metric="rps", value=20.0, target=50.0),
    _event(20.0, "ScalingReplicaSet", revision=1, replicas=1, from_replicas=2, names=["reference-1"]),
    _event(20.0, "NotReady", "reference-1"),
]
CANARY = [
    _event(-9, "Scheduled", "reference-0", revision=1), _event(-8, "Ready", "reference-0"),
    _event(-9, "Scheduled", "reference-1", revision=1), _event(-8, "Ready", "reference-1"),
    _event(0.0, "RolloutStarted", revision=2, strategy="canary"), _event(0.0, "TrafficShifted", weights={"1": 100}),
    _event(0.1, "Scheduled", "reference-2", revision=2), _event(3.0, "Ready", "reference-2"),
    _event(3.0, "TrafficShifted", weights={"1": 80, "2": 20}), _event(9.0, "TrafficShifted", weights={"1": 100}),
    _event(9.6, "NotReady", "reference-2"), _event(10.0, "TrafficShifted", weights={}),
    _event(10.0, "RolloutRolledBack", revision=2, why="the canary failed 100.0% of its requests (limit 5.0%)"),
]


def _frame(rows: list[dict], tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return frames.read_events(path)


def test_ready_replicas_and_scale_ups_come_from_the_events(tmp_path):
    events = _frame(AUTOSCALE, tmp_path)
    replicas = drills.replica_timeline(events)
    assert replicas["ready_replicas"].tolist() == [1, 2, 1]
    [up, down] = drills.scale_ups(events)
    assert (up["from"], up["to"], up["ready_after_s"]) == (1, 2, 3.6)  # Ready 3.6 s after the decision
    assert (down["from"], down["to"], down["ready_after_s"]) == (2, 1, None)


def test_traffic_share_follows_the_split_then_the_ready_replicas(tmp_path):
    events = _frame(CANARY, tmp_path)
    share = drills.traffic_timeline(events, drills.replica_timeline(events))
    canary = share[share["revision"] == 2].set_index("time_s")["share_percent"]
    assert canary[INJECTED + 3.0] == 20.0 and canary[INJECTED + 9.6] == 0.0
    stable = share[share["revision"] == 1].set_index("time_s")["share_percent"]
    assert stable[INJECTED - 8] == 100.0 and stable[INJECTED + 10.0] == 100.0


def test_the_chaos_section_shows_the_drill_panel_and_tables(tmp_path):
    cell = tmp_path / "canary-broken" / "multi-active"
    write_chaos(cell)
    (cell / "events.jsonl").write_text("\n".join(json.dumps(e) for e in CANARY) + "\n", encoding="utf-8")
    result = read_json(cell / "result.json")
    result["drills"] = [{"drill": "rollout", "strategy": "canary", "revision": 2, "from_revision": 1, "phase": "RolledBack",
                         "duration_s": 10.2, "why": "the canary failed 100.0% of its requests (limit 5.0%)",
                         "analysis": {"canary_requests": 48, "canary_failed_share": 1.0,
                                      "share_of_all_failed_by_canary": 0.2}}]
    write_json(cell / "result.json", result)
    [section] = collect_sections(tmp_path)
    assert any(caption.startswith("replicas, traffic share") for caption, _ in section.figures)
    rollouts = next(rows for caption, rows in section.tables if caption.startswith("rollouts"))
    assert rollouts == [{"strategy": "canary", "revision": "1 -> 2", "outcome": "RolledBack", "took (s)": "10.2",
                         "why": "the canary failed 100.0% of its requests (limit 5.0%)", "canary requests": 48,
                         "canary failed": "100.0%", "of all requests": "20.0%"}]


def test_a_fault_without_drill_events_gets_no_drill_panel(tmp_path):
    write_chaos(tmp_path / "pod-kill")
    [section] = collect_sections(tmp_path)
    assert not any(caption.startswith("replicas, traffic share") for caption, _ in section.figures)


def test_a_spike_shows_its_goodput_table_without_a_replica_panel(tmp_path):
    cell = tmp_path / "overload-spike" / "single"
    write_chaos(cell)
    result = read_json(cell / "result.json")
    result["drills"] = [{"drill": "overload", "rate_limit": {"rate": 60.0, "burst": 20}, "offered_rps": 200.0,
                         "rejected": 1179, "admitted": 421, "shed_503": 0, "p99_admitted_ms": 171.1, "goodput_rps": 52.6,
                         "slo_latency_ms": 500.0}]
    write_json(cell / "result.json", result)
    [section] = collect_sections(tmp_path)
    [spike] = [rows for caption, rows in section.tables if caption.startswith("load spike")]
    assert spike == [{"rate limit": "60/s, burst 20", "offered (req/s)": "200.0", "rejected 429": 1179, "admitted": 421,
                      "shed 503": 0, "p99 admitted (ms)": "171", "goodput (req/s)": "52.6", "SLO (ms)": "500"}]
    assert not any(caption.startswith("replicas, traffic share") for caption, _ in section.figures)
