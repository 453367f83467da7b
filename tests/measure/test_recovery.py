"""Recovery analysis on constructed timelines whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.errors import ConfigError, HarnessError
from harness.measure.platform_view import platform_view
from harness.measure.recovery import analyze_recovery, bad_intervals, infer_period_s, is_good
from harness.request_records import ProbeSample, RequestRecord

T0 = 1_700_000_000.0  # an epoch time, so float resolution is what real timelines have
PERIOD_S = 0.05
SLO_MS = 500.0
ANSWER_S = 0.012  # the latency of a good answer in these timelines


def _timeline(duration_s: float, bad_spans: list[tuple[float, float]], *, phase_s: float = 0.0, jitter_s: float = 0.0,
              seed: int = 0, slow_spans: list[tuple[float, float]] = ()) -> list[ProbeSample]:
    """A 50 ms prober from T0 + phase: failures (503) in ``bad_spans``, 800 ms answers in ``slow_spans``."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(int(round(duration_s / PERIOD_S))):
        rel = phase_s + i * PERIOD_S + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
        if any(a <= rel < b for a, b in bad_spans):
            samples.append(ProbeSample(t_s=T0 + rel, ok=False, latency_ms=2.0, status=503, error="not ready"))
        elif any(a <= rel < b for a, b in slow_spans):
            samples.append(ProbeSample(t_s=T0 + rel, ok=True, latency_ms=800.0, status=200))
        else:
            samples.append(ProbeSample(t_s=T0 + rel, ok=True, latency_ms=12.0, status=200))
    return samples


@pytest.mark.parametrize(("phase_s", "jitter_s"), [(0.0, 0.0), (0.013, 0.0), (0.049, 0.0), (0.021, 0.004)])
def test_two_second_outage_is_measured_as_two_seconds_within_one_period(phase_s, jitter_s):
    timeline = _timeline(30.0, [(10.0, 12.0)], phase_s=phase_s, jitter_s=jitter_s, seed=3)
    result = analyze_recovery(timeline, injected_at_s=T0 + 9.9, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert abs(result.outage_s - 2.0) <= PERIOD_S
    assert abs(result.first_failure_s - (T0 + 10.0)) <= PERIOD_S
    # recovery is when the first good answer was received: sent at 12.0 s, answered in 12 ms
    assert abs(result.recovered_at_s - (T0 + 12.0 + ANSWER_S)) <= PERIOD_S
    assert abs(result.ttr_s - 2.0 - ANSWER_S) <= PERIOD_S
    assert result.recovered
    assert len(result.outages) == 1
    assert abs((result.outages[0][1] - result.outages[0][0]) - 2.0) <= PERIOD_S
    assert result.probe_period_s == pytest.approx(PERIOD_S, abs=0.005)


def test_flapping_recovery_is_not_counted():
    # Good runs of 0.5 s and 0.3 s between failures are shorter than the 1 s stability window.
    timeline = _timeline(30.0, [(10.0, 11.0), (11.5, 12.0), (12.3, 13.0)])
    result = analyze_recovery(timeline, injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert result.recovered
    assert result.recovered_at_s == pytest.approx(T0 + 13.0 + ANSWER_S, abs=1e-6)
    assert result.ttr_s == pytest.approx(3.0 + ANSWER_S, abs=1e-6)
    assert result.outage_s == pytest.approx(1.0 + 0.5 + 0.7, abs=1e-6)
    assert len(result.outages) == 3


def test_recovery_cannot_precede_the_faults_platform_effect():
    # A memory fault first only slows answers (over the SLO at 10-10.5 s), answers are good for 2 s,
    # then the kernel OOM-kills the replica at 12.5 s and clients fail until 13.5 s.
    timeline = _timeline(30.0, [(12.5, 13.5)], slow_spans=[(10.0, 10.5)])
    events = [{"time_s": T0 + 12.5, "type": "OOMKilled", "replica": "reference-0"},
              {"time_s": T0 + 13.4, "type": "Ready", "replica": "reference-0"}]
    result = analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=SLO_MS, stability_window_s=1.0,
                              events=events)
    assert result.first_failure_s == pytest.approx(T0 + 10.0, abs=1e-6)
    assert result.recovered_at_s == pytest.approx(T0 + 13.5 + ANSWER_S, abs=1e-6)
    assert result.ttr_s == pytest.approx(3.5 + ANSWER_S, abs=1e-6)
    # without the platform's events the second figure decides as well: 1 s with no successful answer
    # (12.5 to 13.5 s) is the longest unavailability, and recovery cannot come before its end
    blind = analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert blind.unavailability_s == pytest.approx(13.5 - 12.45, abs=1e-6)  # last success sent 12.45
    assert blind.recovered_at_s == pytest.approx(T0 + 13.5 + ANSWER_S, abs=1e-6)


def test_a_later_event_without_client_failures_does_not_move_recovery():
    timeline = _timeline(30.0, [(10.0, 11.0)])
    events = [{"time_s": T0 + 20.0, "type": "Exited", "replica": "reference-1", "exit_code": 0}]
    result = analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=SLO_MS, stability_window_s=1.0,
                              events=events)
    assert result.recovered_at_s == pytest.approx(T0 + 11.0 + ANSWER_S, abs=1e-6)


def test_flapping_until_the_end_is_not_recovered():
    spans = [(10.0 + k, 10.6 + k) for k in range(20)]  # 0.6 s bad, 0.4 s good, to the end
    result = analyze_recovery(_timeline(30.0, spans), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert not result.recovered and result.ttr_s is None and result.recovered_at_s is None


def test_stability_window_zero_recovers_at_the_first_good_sample():
    result = analyze_recovery(_timeline(20.0, [(10.0, 11.0), (11.5, 12.0)]), injected_at_s=T0 + 10.0,
                              slo_latency_ms=SLO_MS, stability_window_s=0.0)
    assert result.recovered_at_s == pytest.approx(T0 + 11.0 + ANSWER_S, abs=1e-6)


def test_no_outage_is_a_valid_result_with_ttr_zero():
    result = analyze_recovery(_timeline(30.0, []), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert result.recovered and result.ttr_s == 0.0
    assert result.first_failure_s is None and result.recovered_at_s is None and result.time_to_failure_s is None
    assert result.outage_s == 0.0 and result.outages == []
    assert result.availability == 1.0 and result.availability_source == "prober"
    assert result.p50_ms_during == 12.0 and math.isnan(result.p50_ms_after)


def test_outage_never_recovered_is_flagged():
    result = analyze_recovery(_timeline(30.0, [(10.0, 99.0)]), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0)
    assert not result.recovered and result.ttr_s is None and result.recovered_at_s is None
    assert result.outage_s == pytest.approx(20.0, abs=1e-6)
    assert result.window_end_s == pytest.approx(T0 + 30.0, abs=1e-6)
    data = result.to_dict()
    assert data["recovered"] is False and data["ttr_s"] is None and data["p99_ms_after"] is None
    json.dumps(data, allow_nan=False)


def test_a_good_run_at_the_end_shorter_than_the_window_does_not_confirm_recovery():
    result = analyze_recovery(_timeline(30.0, [(10.0, 29.5)]), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0)
    assert not result.recovered


def test_latency_slo_violations_count_as_failures_but_not_as_unavailability():
    timeline = _timeline(30.0, [], slow_spans=[(10.0, 12.0)])
    result = analyze_recovery(timeline, injected_at_s=T0 + 9.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert result.first_failure_s == pytest.approx(T0 + 10.0, abs=1e-6)
    assert result.outage_s == pytest.approx(2.0, abs=1e-6)
    assert result.ttr_s == pytest.approx(2.0 + ANSWER_S, abs=1e-6)
    assert result.availability == 1.0  # slow answers still answered
    # answers kept coming at 800 ms: only the first slow one leaves a gap (last fast answer 9.962, first
    # slow one 10.8), far less than the 2 s the slow answers lasted
    assert result.unavailability_s == pytest.approx(10.8 - (9.95 + ANSWER_S), abs=1e-6)
    assert result.p99_ms_during == pytest.approx(800.0)
    assert not is_good(timeline[200], SLO_MS) and is_good(timeline[0], SLO_MS)


def test_prober_gaps_during_timeouts_count_until_the_next_sample():
    # A sequential prober stalls on 1 s timeouts: bad samples at 10 and 11, the next good one at 12.
    before = [ProbeSample(T0 + i * PERIOD_S, True, 10.0, 200) for i in range(200)]
    stalled = [ProbeSample(T0 + 10.0, False, 1000.0, 0, "timeout"), ProbeSample(T0 + 11.0, False, 1000.0, 0, "timeout")]
    after = [ProbeSample(T0 + 12.0 + i * PERIOD_S, True, 10.0, 200) for i in range(200)]
    result = analyze_recovery(before + stalled + after, injected_at_s=T0 + 9.95, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0, probe_period_s=PERIOD_S)
    assert result.outage_s == pytest.approx(2.0, abs=1e-6)
    assert result.ttr_s == pytest.approx(2.0 + 0.010, abs=1e-6)
    # no success received from the last one before the stall (sent 9.95, answered 9.96) to the next (12.01)
    assert result.unavailability_s == pytest.approx(12.01 - 9.96, abs=1e-6)


def test_requests_give_counts_availability_and_latency_phases():
    timeline = _timeline(30.0, [(10.5, 12.5)])
    requests = []
    for i in range(3000):  # 100 req/s for 30 s
        rel = i * 0.01
        if rel < 10.0:
            requests.append(RequestRecord(T0 + rel, T0 + rel, 10.0, 200, True))
        elif rel < 10.5:
            requests.append(RequestRecord(T0 + rel, T0 + rel, 300.0, 200, True))
        elif rel < 12.5:
            requests.append(RequestRecord(T0 + rel, T0 + rel, 1.5, 503, False, "not ready"))
        else:
            requests.append(RequestRecord(T0 + rel, T0 + rel, 20.0, 200, True))
    result = analyze_recovery(timeline, requests=requests, injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0, baseline_s=5.0)
    assert result.total_requests == 2000 and result.failed_requests == 200
    assert result.availability == pytest.approx(0.9)
    assert result.availability_source == "requests" and result.latency_source == "requests"
    assert result.p50_ms_before == 10.0 and result.p99_ms_before == 10.0
    assert result.p50_ms_during == 300.0 and result.p99_ms_during == 300.0
    assert result.p50_ms_after == 20.0 and result.p99_ms_after == 20.0
    assert result.time_to_failure_s == pytest.approx(0.5, abs=1e-6)
    streamed = analyze_recovery(timeline, requests=iter(requests), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                                stability_window_s=1.0, baseline_s=5.0)
    assert streamed.to_dict() == result.to_dict()


def test_result_dict_has_every_documented_key():
    data = analyze_recovery(_timeline(20.0, [(10.0, 11.0)]), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                            stability_window_s=1.0).to_dict()
    for key in ("injected_at_s", "first_failure_s", "recovered_at_s", "recovered", "ttr_s", "outage_s",
                "failed_requests", "total_requests", "availability", "p50_ms_before", "p99_ms_before",
                "p50_ms_during", "p99_ms_during", "p50_ms_after", "p99_ms_after", "platform"):
        assert key in data
    json.dumps(data, allow_nan=False)


class _EventObject:
    def __init__(self, data):
        self._data = data

    def to_dict(self):
        return dict(self._data)


def _event(rel_s: float, kind: str, replica: str | None = "replica-0", **extra) -> dict:
    return {"time_s": T0 + rel_s, "mono_s": 5000.0 + rel_s, "type": kind, "replica": replica, "reason": extra.pop("reason", ""),
            "message": "", "exit_code": extra.pop("exit_code", None), **extra}


def test_events_are_parsed_into_the_platform_view():
    events = [
        _event(1.0, "Started"), _event(2.0, "Ready"), _event(1.0, "Started", "replica-1"), _event(2.0, "Ready", "replica-1"),
        _event(10.02, "Killing", reason="chaos"), _event(10.03, "Exited", exit_code=137), _event(10.03, "NotReady"),
        _EventObject(_event(10.5, "Ready", "replica-1")),  # another replica: not "ready again"
        _event(10.6, "BackOff", delay_s=0.5), _event(11.1, "Started"), _event(12.3, "Ready"),
        _event(12.3, "Recovered", down_s=2.27), _event(40.0, "Killing"),  # after the window
    ]
    result = analyze_recovery(_timeline(30.0, [(10.05, 12.3)]), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0, events=events)
    view = result.platform
    assert view["killed_at_s"] == pytest.approx(T0 + 10.02) and view["kill_type"] == "Killing" and view["kill_reason"] == "chaos"
    assert view["exited_at_s"] == pytest.approx(T0 + 10.03) and view["exit_code"] == 137
    assert view["not_ready_at_s"] == pytest.approx(T0 + 10.03)
    assert view["restarted_at_s"] == pytest.approx(T0 + 11.1)
    assert view["ready_again_at_s"] == pytest.approx(T0 + 12.3)
    assert view["restart_count"] == 1 and view["back_off_count"] == 1
    assert view["replicas_affected"] == ["replica-0"]
    assert view["oom_killed"] is False
    assert view["event_counts"]["Killing"] == 1 and view["events"] == 8
    json.dumps(result.to_dict(), allow_nan=False)


def test_oom_kill_in_the_platform_view():
    view = platform_view([_event(5.0, "OOMKilled", exit_code=137, reason="OOMKilled"), _event(5.5, "Started"),
                          _event(7.0, "Ready")], start_s=T0)
    assert view["oom_killed"] is True and view["kill_type"] == "OOMKilled" and view["exit_code"] == 137
    assert view["ready_again_at_s"] == pytest.approx(T0 + 7.0)
    assert platform_view([])["killed_at_s"] is None and platform_view([])["restart_count"] == 0


def test_malformed_events_name_the_field():
    with pytest.raises(ConfigError, match=r"events\[1\]\.time_s"):
        platform_view([_event(1.0, "Ready"), {"type": "Ready"}])
    with pytest.raises(ConfigError, match=r"events\[0\]\.type"):
        platform_view([{"time_s": 1.0}])
    with pytest.raises(ConfigError, match="events"):
        platform_view([42])


def test_bad_parameters_and_empty_windows():
    timeline = _timeline(5.0, [])
    with pytest.raises(ConfigError, match="slo_latency_ms"):
        analyze_recovery(timeline, injected_at_s=T0, slo_latency_ms=0, stability_window_s=1.0)
    with pytest.raises(ConfigError, match="stability_window_s"):
        analyze_recovery(timeline, injected_at_s=T0, slo_latency_ms=SLO_MS, stability_window_s=-1)
    with pytest.raises(ConfigError, match="end_s"):
        analyze_recovery(timeline, injected_at_s=T0 + 1, slo_latency_ms=SLO_MS, stability_window_s=1.0, end_s=T0)
    with pytest.raises(HarnessError, match="no prober sample"):
        analyze_recovery(timeline, injected_at_s=T0 + 100, slo_latency_ms=SLO_MS, stability_window_s=1.0, end_s=T0 + 200)
    with pytest.raises(HarnessError, match="timeline is empty"):
        analyze_recovery([], injected_at_s=T0, slo_latency_ms=SLO_MS, stability_window_s=1.0)


def test_bad_intervals_and_period_inference():
    timeline = _timeline(10.0, [(2.0, 3.0), (5.0, 5.5)], phase_s=0.0)
    spans = bad_intervals(timeline, SLO_MS)
    assert [(round(a - T0, 6), round(b - T0, 6)) for a, b in spans] == [(2.0, 3.0), (5.0, 5.5)]
    assert infer_period_s(timeline) == pytest.approx(PERIOD_S)
    assert infer_period_s([]) == 0.05
    assert bad_intervals([], SLO_MS) == []


def _stall_timeline(stall_from: float, stall_s: float, *, duration_s: float = 30.0, drain_s: float = 0.02,
                    phase_s: float = 0.0) -> list[ProbeSample]:
    """A 50 ms prober in front of a replica frozen (SIGSTOP) for ``stall_s``: every probe sent during the
    stall is answered once it ends (after ``drain_s`` of catching up), none fails."""
    samples = []
    stall_to = stall_from + stall_s
    for i in range(int(round(duration_s / PERIOD_S))):
        sent = phase_s + i * PERIOD_S
        answered = max(sent + ANSWER_S, stall_to + drain_s) if stall_from <= sent + ANSWER_S and sent < stall_to else sent + ANSWER_S
        samples.append(ProbeSample(t_s=T0 + sent, ok=True, latency_ms=(answered - sent) * 1000.0, status=200))
    return samples


@pytest.mark.parametrize("stall_s", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("phase_s", [0.0, 0.021, 0.049])
def test_a_stall_of_known_length_is_its_unavailability_and_recovery_follows_it(stall_s, phase_s):
    timeline = _stall_timeline(10.0, stall_s, phase_s=phase_s)
    result = analyze_recovery(timeline, injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    # the longest time without a successful answer is the stall plus the first answer's catch-up
    assert result.unavailability_s == pytest.approx(stall_s + 0.02, abs=ANSWER_S + 1e-6)
    assert not result.unavailability_open
    # by send time, probes sent in the stall's last 500 ms (the SLO) were answered in time:
    # the client-side outage is the stall minus the SLO, within a prober period
    assert result.outage_s == pytest.approx(stall_s - SLO_MS / 1000.0 + 0.02, abs=PERIOD_S + 1e-6)
    # recovery never precedes the end of the stall as the unavailability figure sees it
    assert result.recovered_at_s >= result.unavailable_until_s - 1e-6
    assert result.recovered_at_s == pytest.approx(T0 + 10.0 + stall_s + 0.02, abs=1e-6)


def test_an_unavailability_that_lasts_to_the_windows_end_is_open():
    result = analyze_recovery(_timeline(30.0, [(10.0, 99.0)]), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS,
                              stability_window_s=1.0)
    assert result.unavailability_open
    assert result.unavailability_s == pytest.approx(20.0, abs=1e-6)
    assert result.unavailable_until_s == result.window_end_s


def test_no_fault_leaves_about_one_period_between_answers():
    result = analyze_recovery(_timeline(30.0, []), injected_at_s=T0 + 10.0, slo_latency_ms=SLO_MS, stability_window_s=1.0)
    assert result.unavailability_s == pytest.approx(PERIOD_S, abs=ANSWER_S + 1e-6)
