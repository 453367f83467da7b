"""Judging a fault's claimed platform behaviour from constructed event lists."""

from __future__ import annotations

from harness.chaos.behaviour import backoff_delays_s, check_behaviour, match_sequence
from harness.chaos.experiment import Expectation
from harness.platforms.base import Event


def ev(t, kind, replica="r0", exit_code=None, message="", **extra):
    return Event(time_s=t, mono_s=t, type=kind, replica=replica, message=message, exit_code=exit_code, extra=extra)


def test_a_sequence_in_order_is_seen_and_other_events_may_come_between():
    events = [ev(9, "Exited"), ev(10, "Unhealthy"), ev(11, "Unhealthy"), ev(12, "Killing"), ev(12.5, "Exited", exit_code=137),
              ev(13, "Started"), ev(15, "Ready")]
    expect = Expectation(sequence=["Unhealthy", "Killing", "Started", "Ready"])
    assert check_behaviour(events, expect, since_s=10, replica="r0") == []
    assert [e.time_s for e in match_sequence(events[1:], expect.sequence)] == [10, 12, 13, 15]


def test_a_missing_step_is_named_with_what_was_seen():
    events = [ev(10, "Unhealthy"), ev(13, "Started")]
    findings = check_behaviour(events, Expectation(sequence=["Unhealthy", "Killing", "Started"]), since_s=10, replica="r0")
    assert len(findings) == 1
    assert "no Killing after Unhealthy" in findings[0] and "Unhealthy -> Started" in findings[0]


def test_events_before_the_injection_or_of_other_replicas_do_not_count():
    events = [ev(5, "OOMKilled", exit_code=137), ev(11, "OOMKilled", replica="r1", exit_code=137)]
    findings = check_behaviour(events, Expectation(sequence=["OOMKilled"], exit_code=137), since_s=10, replica="r0")
    assert len(findings) == 2
    assert check_behaviour(events, Expectation(sequence=["OOMKilled"], same_replica=False), since_s=10, replica="r0") == []


def test_absent_types_and_exit_codes():
    events = [ev(10, "NotReady"), ev(12, "Ready")]
    expect = Expectation(sequence=["NotReady", "Ready"], absent=["Killing", "Exited"])
    assert check_behaviour(events, expect, since_s=10) == []
    restarted = events + [ev(13, "Killing", message="liveness")]
    assert check_behaviour(restarted, expect, since_s=10, replica="r0") == ["expected no Killing on replica r0, saw 1 (first: liveness)"]
    assert "exit codes seen: [1]" in check_behaviour([ev(10, "Exited", exit_code=1)], Expectation(exit_code=137), since_s=0)[0]


def test_backoff_delays_must_grow_until_the_cap():
    growing = [ev(10 + i, "BackOff", delay_s=d) for i, d in enumerate([1, 2, 4, 8, 8])]
    assert backoff_delays_s(growing) == [1, 2, 4, 8, 8]
    assert check_behaviour(growing, Expectation(backoff_growing=True), since_s=0) == []
    from_messages = [ev(10, "BackOff", message="Back-off 1s restarting"), ev(12, "BackOff", message="Back-off 2s restarting")]
    assert backoff_delays_s(from_messages) == [1.0, 2.0]
    flat = [ev(10, "BackOff", delay_s=2), ev(12, "BackOff", delay_s=2)]
    assert check_behaviour(flat, Expectation(backoff_growing=True), since_s=0) != []
    assert check_behaviour(growing[:1], Expectation(backoff_growing=True), since_s=0) != []
