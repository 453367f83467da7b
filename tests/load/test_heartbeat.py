"""The load heartbeat (`harness.load.heartbeat`) and its display (`harness.cli._display`): figures read
from the requests.csv the generators append to, a bar on a terminal, plain lines in CI."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.cli._display import PLAIN_EVERY_S, ProgressDisplay, render_bar
from harness.load.heartbeat import Heartbeat, LoadProgress, LoadSnapshot, RequestTail, format_snapshot
from harness.measure.percentiles import percentile
from harness.request_records import RequestRecord, append_records

T0 = 1_700_000_000.0


def _records(start_s: float, count: int, *, every_s: float = 0.01, failing_every: int = 0) -> list[RequestRecord]:
    out = []
    for i in range(count):
        ok = not (failing_every and i % failing_every == 0)
        out.append(RequestRecord(start_s + i * every_s, start_s + i * every_s, 10.0 + i % 17, 200 if ok else 503, ok,
                                 "" if ok else "HTTP 503", "rate"))
    return out


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Recorder:
    """A LoadProgress that keeps what it is given."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.beat_interval_s = interval_s
        self.messages: list[str] = []
        self.beats: list[LoadSnapshot] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)

    def beat(self, snapshot: LoadSnapshot) -> None:
        self.beats.append(snapshot)


# ----- reading what the generators append ---------------------------------------------------------------

def test_the_tail_reads_only_new_complete_rows(tmp_path):
    path = tmp_path / "requests.csv"
    tail = RequestTail(path, since_s=T0)
    assert tail.read_new() == []  # no file yet
    append_records(path, _records(T0, 3), RequestRecord)
    assert [row[0] for row in tail.read_new()] == [T0, T0 + 0.01, T0 + 0.02]
    assert tail.read_new() == []
    with open(path, "a", encoding="utf-8") as handle:  # a row being written: not read until it is whole
        handle.write(f"{T0 + 1},{T0 + 1},12.5,200,1")
    assert tail.read_new() == []
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(",,rate,\n")
    assert tail.read_new() == [(T0 + 1, 12.5, True)]


def test_the_tail_starts_over_on_a_new_file_and_skips_an_earlier_runs_rows(tmp_path):
    path = tmp_path / "requests.csv"
    append_records(path, _records(T0 - 60, 5), RequestRecord)  # left by an earlier run in the same directory
    tail = RequestTail(path, since_s=T0)
    assert tail.read_new() == []
    path.unlink()  # the generator replaces it as it starts
    append_records(path, _records(T0 + 1, 2), RequestRecord)
    assert len(tail.read_new()) == 2


def test_a_snapshot_counts_requests_errors_rate_and_the_exact_p99(tmp_path):
    path = tmp_path / "requests.csv"
    clock = _Clock(T0)
    heartbeat = Heartbeat(path, 30.0, lambda _s: None, clock=clock)
    first = _records(T0 + 0.5, 200, failing_every=50)
    append_records(path, first, RequestRecord)
    clock.now = T0 + 5.0
    snap = heartbeat.snapshot()
    assert (snap.requests, snap.errors) == (200, 4)
    assert snap.rate_rps == pytest.approx(200 / 4.5)  # from the first request: not the generator's start-up
    assert snap.elapsed_s == pytest.approx(4.5) and snap.fraction == pytest.approx(4.5 / 30)
    second = _records(T0 + 2.5, 100)
    append_records(path, second, RequestRecord)
    clock.now = T0 + 10.0
    snap = heartbeat.snapshot()
    assert snap.requests == 300 and snap.rate_rps == pytest.approx(100 / 5.0)  # the last 5 s only
    ok = [r.latency_ms for r in first + second if r.ok]
    assert snap.p99_ms == percentile(np.array(ok), 99.0)  # the one percentile definition, over successes


def test_a_heartbeat_of_several_generator_processes_counts_every_workers_records(tmp_path):
    paths = [tmp_path / "workers" / str(i) / "requests.csv" for i in (0, 1)]
    clock = _Clock(T0)
    heartbeat = Heartbeat(paths, 30.0, lambda _s: None, clock=clock)
    shares = [_records(T0 + 0.5, 100, every_s=0.02), _records(T0 + 0.51, 60, every_s=0.02, failing_every=20)]
    for path, share in zip(paths, shares):
        path.parent.mkdir(parents=True)
        append_records(path, share, RequestRecord)
    clock.now = T0 + 3.0
    snap = heartbeat.snapshot()
    assert (snap.requests, snap.errors) == (160, 3)
    ok = [r.latency_ms for r in shares[0] + shares[1] if r.ok]
    assert snap.p99_ms == percentile(np.array(sorted(ok)), 99.0)


def test_a_failing_display_never_breaks_the_run(tmp_path):
    def broken(_snapshot):
        raise RuntimeError("display gone")

    heartbeat = Heartbeat(tmp_path / "requests.csv", 1.0, broken, interval_s=0.05).start()
    heartbeat.stop()  # the final beat raises inside: logged, not raised


# ----- showing it ------------------------------------------------------------------------------------------

def _snap(elapsed_s: float, requests: int = 100, *, final: bool = False) -> LoadSnapshot:
    return LoadSnapshot(elapsed_s=elapsed_s, duration_s=30.0, requests=requests, errors=1, rate_rps=98.5,
                        p99_ms=23.44, final=final)


def test_the_display_is_a_load_progress_drawing_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = io.StringIO()
    display = ProgressDisplay("harness load", stream, tty=True)
    assert isinstance(display, LoadProgress) and display.beat_interval_s == 1.0
    display.beat(_snap(12.0))
    assert stream.getvalue() == "\r\x1b[K" + "harness load " + render_bar(_snap(12.0))
    assert "[##########--------------]  40%  12/30 s | 100 req | 98.5 req/s | 1 err | p99 23.4 ms" in stream.getvalue()
    display("ready")  # a message clears the bar and takes a whole line
    assert stream.getvalue().endswith("\r\x1b[Kharness load: ready\n")
    display.beat(_snap(13.0))
    display.beat(_snap(14.0, final=True))
    assert stream.getvalue().endswith("\r\x1b[K")  # the bar is gone before the summary


def test_the_bar_is_cut_to_the_terminal_so_it_redraws_in_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    stream = io.StringIO()
    ProgressDisplay("harness load", stream, tty=True).beat(_snap(12.0))
    assert stream.getvalue() == "\r\x1b[K" + ("harness load " + render_bar(_snap(12.0)))[:49]


def test_plain_lines_in_ci_every_few_seconds():
    stream = io.StringIO()
    display = ProgressDisplay("harness load", stream, tty=False)
    assert not isinstance(stream, type(sys.stderr)) and display.beat_interval_s == PLAIN_EVERY_S
    display.beat(_snap(0.0, requests=0))
    display.beat(_snap(0.0, requests=0))
    for elapsed in (5.0, 7.0, 10.0, 15.0):
        display.beat(_snap(elapsed))
    display.beat(_snap(16.0, final=True))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "harness load: waiting for the first request (30 s planned)",
        "harness load: " + format_snapshot(_snap(5.0)),
        "harness load: " + format_snapshot(_snap(10.0)),
        "harness load: " + format_snapshot(_snap(15.0)),
    ]
    assert lines[1] == "harness load: 5 s of 30 s: 100 requests (98.5/s), 1 errors, p99 23.4 ms so far"
    assert "\r" not in stream.getvalue()


def test_plain_lines_for_each_of_several_loads_in_one_command():
    stream = io.StringIO()  # bench ab: one short load per pair, each with its own heartbeat
    display = ProgressDisplay("harness bench", stream, tty=False)
    for _ in range(2):
        display.beat(_snap(0.0, requests=0))
        display.beat(_snap(5.0))
        display.beat(_snap(6.0, final=True))
    assert stream.getvalue().splitlines() == 2 * [
        "harness bench: waiting for the first request (30 s planned)", "harness bench: " + format_snapshot(_snap(5.0))]


# ----- a short real run: beats while the generators run --------------------------------------------------------

def _beats_of_a_run(load, standin, tmp_path: Path, gen_cpus) -> tuple[_Recorder, dict]:
    from harness.load.session import run_session

    deployment = SimpleNamespace(endpoint=standin.url, replicas=lambda: [])
    progress = _Recorder(interval_s=0.5)
    result = run_session(deployment, load, tmp_path, generator_cpus=gen_cpus, prober=False, telemetry=False,
                         progress=progress)
    return progress, result


def _check_beats(progress: _Recorder, result: dict) -> None:
    beats = progress.beats
    assert beats and beats[-1].final and not any(b.final for b in beats[:-1])
    counted = [b.requests for b in beats]
    assert counted == sorted(counted) and len({c for c in counted if c}) >= 2, counted  # it grew while it ran
    assert beats[-1].requests == result["requests"] > 0 and beats[-1].errors == result["errors"]
    assert beats[-1].p99_ms is not None and max(b.rate_rps for b in beats) > 0


@pytest.mark.slow
def test_beats_during_an_open_loop_run(standin, tmp_path, gen_cpus):
    from harness.load.session import RateLoad

    progress, result = _beats_of_a_run(RateLoad(rate_rps=40.0, duration_s=3.0), standin, tmp_path, gen_cpus)
    _check_beats(progress, result)


@pytest.mark.slow
def test_beats_during_a_locust_run_without_importing_locust(standin, tmp_path, gen_cpus):
    from harness.load.profiles import LoadProfile

    profile = LoadProfile(kind="steady", users=2, duration_s=3, think_time_s=0.02)
    progress, result = _beats_of_a_run(profile, standin, tmp_path, gen_cpus)
    _check_beats(progress, result)
    assert "locust" not in sys.modules


@pytest.mark.slow
def test_beats_during_an_interleaved_pair_as_harness_bench_ab_runs_it(standin, standin_factory, tmp_path, gen_cpus,
                                                                     monkeypatch):
    from harness.load import interleave
    from harness.load.session import RateLoad

    monkeypatch.setattr(interleave, "warm_up", lambda deployment, load, seconds: 0)  # the stand-ins need none
    live = {"a": (SimpleNamespace(endpoint=standin.url), None), "b": (SimpleNamespace(endpoint=standin_factory().url), None)}
    progress = _Recorder(interval_s=0.5)
    results = interleave._measure_alternating(live, ("a", "b"), RateLoad(rate_rps=40.0, duration_s=3.0), tmp_path, 1,
                                              cpus=interleave.CpuPlan(None, tuple(gen_cpus) if gen_cpus else None),
                                              session="s", metadata={}, progress=progress)
    requests, errors = (sum(results[arm][key] for arm in "ab") for key in ("requests", "errors"))
    _check_beats(progress, {"requests": requests, "errors": errors})
    assert results["a"]["requests"] > 0 and results["b"]["requests"] > 0  # one run, both builds
