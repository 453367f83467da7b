"""The main job: stage order, budgets and ETA, failure isolation, interrupts, exit codes, run.json.

Fast tests drive `harness.job.engine.Job` with fake stages and a fake clock; one slow test runs the
``tiny`` profile for real (every stage, about a minute on 2 cores) and checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError, VerdictFailed
from harness.job import (
    ABORTED, COMPLETED, EXIT_INTERRUPTED, FAIL, FAILED, JOB_PRESETS, PASS, SKIPPED, STAGES, Stage, StageOutcome,
    get_job_preset, run_job,
)
from harness.job.engine import Job
from harness.job.outcomes import exit_code_for, format_clock
from harness.job.stages import LineWriter, default_stages
from harness.results import RunRecord, load_run, save_run
from harness.sweep.grid import build_plan
from harness.sweep.planner import CapacitySettings, validate_capacity_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_job(tmp_path: Path, stages: list[Stage], *, clock=None, lines: list[str] | None = None, baseline=None) -> Job:
    out = tmp_path / "run"
    record = RunRecord(kind="run", profile="smoke")
    save_run(out, record)
    sink = lines if lines is not None else []
    return Job(get_job_preset("smoke"), out, record, stages, progress=sink.append, baseline=baseline,
               save=lambda rec: save_run(out, rec), **({"clock": clock} if clock else {}))


def passing(verdict: str | None = PASS):
    def run(ctx):
        ctx.say("working")
        return StageOutcome(verdict=verdict)
    return run


def raising(exc: BaseException):
    def run(ctx):
        raise exc
    return run


def test_stages_run_in_order_and_all_pass_gives_exit_0(tmp_path):
    order: list[str] = []

    def step(name):
        def run(ctx):
            order.append(name)
            return StageOutcome(verdict=PASS)
        return run

    job = make_job(tmp_path, [Stage(n, step(n), 1.0) for n in ("preflight", "load", "chaos", "report")])
    result = job.run()
    assert order == ["preflight", "load", "chaos", "report"]
    assert [s.status for s in result.stages] == [COMPLETED] * 4
    assert result.exit_code == 0 and result.verdict == "pass"
    record = load_run(tmp_path / "run")
    assert record.status == "completed" and record.finished_s is not None
    assert set(record.summary["stages"]) == {"preflight", "load", "chaos", "report"}
    assert record.summary["exit_code"] == 0


def test_progress_lines_name_the_stage_with_elapsed_and_eta_from_budgets(tmp_path):
    clock, lines = FakeClock(), []

    def first(ctx):
        clock.now += 4
        ctx.say("halfway")
        clock.now += 6
        return StageOutcome()

    job = make_job(tmp_path, [Stage("a", first, 10), Stage("b", passing(), 20), Stage("c", passing(), 30)],
                   clock=clock, lines=lines)
    job.run()
    assert lines[0] == "[0:00 | ETA 1:00] a: started (budget 0:10)"
    assert "[0:04 | ETA 0:56] a: halfway" in lines  # 6 s left of a, then 20 + 30
    assert any(line.startswith("[0:10 | ETA 0:50] a: completed in 0:10") for line in lines)


def test_over_budget_is_recorded_and_eta_does_not_go_negative(tmp_path):
    clock, lines = FakeClock(), []

    def slow(ctx):
        clock.now += 25
        ctx.say("still going")
        return StageOutcome()

    job = make_job(tmp_path, [Stage("a", slow, 10), Stage("b", passing(), 5)], clock=clock, lines=lines)
    result = job.run()
    assert result.stage("a").over_budget and not result.stage("b").over_budget
    assert "[0:25 | ETA 0:05] a: still going" in lines
    assert any("OVER BUDGET" in line for line in lines)


def test_a_failing_stage_is_recorded_and_the_job_goes_on_to_the_report(tmp_path):
    ran: list[str] = []

    def later(ctx):
        ran.append("later")
        return StageOutcome(verdict=PASS)

    def report(ctx):
        ran.append("report")
        return StageOutcome(verdict=PASS)

    job = make_job(tmp_path, [Stage("load", raising(HarnessError("locust did not start")), 1),
                              Stage("chaos", later, 1), Stage("report", report, 1, always=True)])
    result = job.run()
    assert ran == ["later", "report"]
    load = result.stage("load")
    assert load.status == FAILED and "locust did not start" in load.reason
    assert result.exit_code == 3 and result.verdict == "incomplete"
    record = load_run(tmp_path / "run")
    assert record.status == "failed" and "locust did not start" in record.reason


def test_a_load_stage_whose_generator_recorded_nothing_is_failed_naming_the_records_file(tmp_path):
    from harness.load.result import no_records_error

    requests = tmp_path / "run" / "load" / "requests.csv"
    (tmp_path / "locust.log").write_text("Traceback ...\nno module named locust\n")
    job = make_job(tmp_path, [Stage("load", raising(no_records_error("Locust", requests, 0, tmp_path / "locust.log")), 1),
                              Stage("report", passing(), 1, always=True)])
    result = job.run()
    load = result.stage("load")
    assert load.status == FAILED and result.exit_code == 3
    assert f"{requests} was not written (exit code 0)" in load.reason  # the reason is the message's first line
    assert "no module named locust" not in load.reason


def test_an_unexpected_exception_is_isolated_and_its_traceback_kept(tmp_path):
    job = make_job(tmp_path, [Stage("sweep", raising(ZeroDivisionError("boom")), 1), Stage("capacity", passing(), 1)])
    result = job.run()
    assert result.stage("sweep").status == FAILED and result.stage("capacity").status == COMPLETED
    log = (tmp_path / "run" / "job-errors.log").read_text()
    assert "ZeroDivisionError: boom" in log and "Traceback" in log
    assert load_run(tmp_path / "run").artifacts["errors"] == "job-errors.log"


def test_a_failed_verdict_gives_exit_1_and_a_failed_stage_outranks_it(tmp_path):
    job = make_job(tmp_path, [Stage("chaos", passing(FAIL), 1), Stage("report", passing(), 1, always=True)])
    result = job.run()
    assert result.exit_code == 1 and result.verdict == "fail"
    assert load_run(tmp_path / "run").status == "completed"  # it ran to the end; the verdict is the failure

    other = make_job(tmp_path / "b", [Stage("chaos", passing(FAIL), 1), Stage("sweep", raising(HarnessError("x")), 1)])
    assert other.run().exit_code == 3


def test_verdict_failed_raised_by_a_stage_is_a_failed_verdict_with_its_findings(tmp_path):
    job = make_job(tmp_path, [Stage("chaos", raising(VerdictFailed("2 cells", ["a: not met", "b: not met"])), 1)])
    result = job.run()
    chaos = result.stage("chaos")
    assert chaos.status == COMPLETED and chaos.verdict == FAIL and chaos.findings == ["a: not met", "b: not met"]
    assert result.exit_code == 1


def test_preflight_failure_stops_the_job_early_with_exit_1(tmp_path):
    def preflight(ctx):
        return StageOutcome(verdict=FAIL, findings=["python: Python 3.8"], stop=True)

    ran: list[str] = []
    job = make_job(tmp_path, [Stage("preflight", preflight, 1), Stage("deploy", raising(AssertionError), 1),
                              Stage("report", lambda ctx: ran.append("report") or StageOutcome(), 1, always=True)])
    result = job.run()
    assert [s.status for s in result.stages] == [COMPLETED, SKIPPED, SKIPPED]
    assert ran == [] and result.exit_code == 1
    record = load_run(tmp_path / "run")
    assert record.status == "failed" and "python: Python 3.8" in record.reason


def test_a_stage_whose_prerequisite_failed_is_skipped_and_what_was_held_is_released(tmp_path):
    released: list[str] = []

    def deploy(ctx):
        ctx.hold("deployment", "dep", lambda: released.append("dep"))
        raise HarnessError("never Ready")

    job = make_job(tmp_path, [Stage("deploy", deploy, 1), Stage("load", passing(), 1, needs=("deploy",)),
                              Stage("chaos", passing(), 1)])
    result = job.run()
    assert result.stage("load").status == SKIPPED and "deploy" in result.stage("load").reason
    assert result.stage("chaos").status == COMPLETED
    assert released == ["dep"]


def test_held_resources_are_kept_for_the_stage_that_needs_them_then_released(tmp_path):
    events: list[str] = []

    def deploy(ctx):
        ctx.hold("deployment", "dep", lambda: events.append("released"))
        return StageOutcome()

    def load(ctx):
        events.append(f"load uses {ctx.get('deployment')}")
        return StageOutcome()

    def chaos(ctx):
        events.append("chaos")
        return StageOutcome()

    make_job(tmp_path, [Stage("deploy", deploy, 1), Stage("load", load, 1, needs=("deploy",)),
                        Stage("chaos", chaos, 1)]).run()
    assert events == ["load uses dep", "released", "chaos"]


def test_keyboard_interrupt_aborts_the_stage_skips_the_rest_and_still_writes_the_report(tmp_path):
    released, ran = [], []

    def load(ctx):
        ctx.hold("deployment", "dep", lambda: released.append("dep"))
        raise KeyboardInterrupt

    def report(ctx):
        ran.append(("report", list(released)))
        return StageOutcome(verdict=PASS)

    job = make_job(tmp_path, [Stage("load", load, 1), Stage("chaos", passing(), 1), Stage("report", report, 1, always=True)])
    result = job.run()
    assert [s.status for s in result.stages] == [ABORTED, SKIPPED, COMPLETED]
    assert ran == [("report", ["dep"])]  # torn down before the report is written
    assert result.exit_code == EXIT_INTERRUPTED and result.verdict == "aborted"
    assert load_run(tmp_path / "run").status == "aborted"


def test_a_stage_that_handles_the_interrupt_itself_is_marked_aborted(tmp_path):
    job = make_job(tmp_path, [Stage("chaos", lambda ctx: StageOutcome(verdict=FAIL, aborted=True), 1),
                              Stage("sweep", passing(), 1)])
    result = job.run()
    assert result.stage("chaos").status == ABORTED and result.stage("sweep").status == SKIPPED
    assert result.exit_code == EXIT_INTERRUPTED


def test_sigint_interrupts_the_running_stage_and_is_held_off_while_the_report_is_written(tmp_path):
    previous = signal.getsignal(signal.SIGINT)
    finished: list[str] = []

    def wait_for_signal(ctx):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the handler raises at the next bytecode boundary
            time.sleep(0.01)
        raise AssertionError("SIGINT did not interrupt the stage")

    def report(ctx):
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C must not break the report
        time.sleep(0.05)
        finished.append("report")
        return StageOutcome()

    job = make_job(tmp_path, [Stage("load", wait_for_signal, 1), Stage("report", report, 1, always=True)])
    result = job.run()
    assert result.stage("load").status == ABORTED and finished == ["report"]
    assert result.exit_code == EXIT_INTERRUPTED
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored


def test_a_failing_progress_display_never_breaks_the_job(tmp_path):
    out = tmp_path / "run"
    record = RunRecord(kind="run")

    def broken(line):
        raise OSError("terminal gone")

    result = Job(get_job_preset("smoke"), out, record, [Stage("a", passing(), 1)], progress=broken).run()
    assert result.exit_code == 0


def test_parts_name_stage_directories_that_hold_a_run_record(tmp_path):
    def load(ctx):
        save_run(ctx.out_dir / "load", RunRecord(kind="load"))
        return StageOutcome(path="load")

    job = make_job(tmp_path, [Stage("load", load, 1), Stage("sweep", lambda ctx: StageOutcome(path="sweep"), 1)])
    job.run()
    assert load_run(tmp_path / "run").parts == {"load": "load"}


def test_exit_code_order():
    from harness.job.outcomes import StageResult

    ok = StageResult("a", COMPLETED, 1, verdict=PASS)
    bad = StageResult("b", COMPLETED, 1, verdict=FAIL)
    broken = StageResult("c", FAILED, 1)
    aborted = StageResult("d", ABORTED, 1)
    assert exit_code_for([ok], interrupted=False) == 0
    assert exit_code_for([ok, bad], interrupted=False) == 1
    assert exit_code_for([bad, broken], interrupted=False) == 3
    assert exit_code_for([bad, broken, aborted], interrupted=False) == EXIT_INTERRUPTED
    assert format_clock(59.6) == "1:00" and format_clock(3725) == "1:02:05"


def test_run_job_validates_its_inputs_before_running_anything(tmp_path):
    with pytest.raises(ConfigError, match="preset='bogus'"):
        run_job("bogus", tmp_path / "x")
    save_run(tmp_path / "old", RunRecord(kind="run"))
    with pytest.raises(ConfigError, match="already holds a run"):
        run_job("smoke", tmp_path / "old", stages=[])
    with pytest.raises(ConfigError, match="--baseline"):
        run_job("smoke", tmp_path / "new", baseline=tmp_path / "missing", stages=[])
    assert not (tmp_path / "new").exists()


def test_run_job_records_the_run_with_fake_stages(tmp_path):
    lines: list[str] = []
    result = run_job("smoke", tmp_path / "out", progress=lines.append,
                     stages=[Stage("preflight", passing(), 1), Stage("report", passing(), 1, always=True)])
    record = load_run(tmp_path / "out")
    assert record.kind == "run" and record.run_id == result.run_id
    assert record.preset == "smoke" and record.profile is None  # profile: a load profile only
    assert record.environment.get("cpu")  # the fingerprint
    assert record.config["job_preset"]["faults"] == list(JOB_PRESETS["smoke"].faults)
    assert any("budget 0:02" in line for line in lines)


def _saved_load(latency_ms: float, seed: int, rounds: int = 0):
    """A fake load stage writing what `harness.load.session.run_session` writes that the report reads
    (with ``rounds``, also the per-round figures `harness load --rounds` writes, which compare judges)."""
    import numpy as np

    from harness.jsonfile import write_json
    from harness.request_records import RequestRecord, write_records

    def run(ctx):
        out = ctx.out_dir / "load"
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        times = 1_700_000_000.0 + np.arange(0, 20.0, 0.01)
        latencies = rng.gamma(8.0, latency_ms / 8.0, size=times.size)
        write_records(out / "requests.csv", [RequestRecord(float(t), float(t), float(v), 200, True, "", "locust")
                                             for t, v in zip(times, latencies)], RequestRecord)
        per_round = [{"round": i + 1, "p50_ms": latency_ms * f, "p99_ms": 2 * latency_ms * f, "throughput_rps": 100.0}
                     for i, f in enumerate(rng.lognormal(0.0, 0.01, size=rounds))]
        write_json(out / "result.json", {"kind": "load", "profile": "steady", "topology": "single",
                                         "throughput_rps": 100.0, "p99_ms": float(np.percentile(latencies, 99)),
                                         "errors": 0, "requests": int(times.size),
                                         **({"rounds": per_round} if rounds else {})})
        return StageOutcome(verdict=PASS, path="load")
    return run


def test_report_stage_writes_the_report_and_a_regression_against_the_baseline_fails_the_job(tmp_path):
    from harness.job.stages import report_stage

    baseline = run_job("smoke", tmp_path / "base", stages=[Stage("load", _saved_load(20.0, 1, rounds=5), 1),
                                                           Stage("report", report_stage, 1, always=True)])
    assert baseline.exit_code == 0, baseline.stages
    assert baseline.report["html"] == tmp_path / "base" / "report.html" and baseline.report["html"].is_file()
    record = load_run(tmp_path / "base")
    assert record.artifacts["report_html"] == "report.html" and record.artifacts["summary"] == "summary.json"

    same = run_job("smoke", tmp_path / "same", baseline=tmp_path / "base",
                   stages=[Stage("load", _saved_load(20.0, 2, rounds=5), 1), Stage("report", report_stage, 1, always=True)])
    assert same.exit_code == 0, same.stage("report").findings

    slower = run_job("smoke", tmp_path / "slow", baseline=tmp_path / "base",
                     stages=[Stage("load", _saved_load(60.0, 3, rounds=5), 1), Stage("report", report_stage, 1, always=True)])
    report = slower.stage("report")
    assert report.verdict == FAIL and any("p99_ms" in f for f in report.findings), report.findings
    assert slower.exit_code == 1 and "Comparison with the baseline" in (tmp_path / "slow" / "report.html").read_text()


def test_cli_rejects_bad_input_with_exit_2(tmp_path, capsys):
    from harness.cli import main

    save_run(tmp_path / "old", RunRecord(kind="run"))
    assert main(["run", "smoke", "--out", str(tmp_path / "old")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", "weekly"]) == 2  # argparse's errors too: one line, exit 2
    assert "argument PRESET: invalid choice: 'weekly'" in capsys.readouterr().err
    assert main(["run", "tiny", "--platform", "kuberentes"]) == 2
    assert "argument --platform: invalid choice: 'kuberentes'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: ring\n")
    for argv, field in ((["--platform", "kubernetes", "--spec", str(bad)], "topology="),  # before any stage runs
                        (["--spec", str(bad)], "topology="),  # a team's own spec on local: checked as early
                        (["--spec", str(tmp_path / "absent.yaml")], "absent.yaml"),
                        (["--platform", "kubernetes", "--spec", str(tmp_path / "absent.yaml")], "no such file")):
        assert main(["run", "tiny", "--out", str(tmp_path / "new"), *argv]) == 2
        assert field in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_profiles_cover_every_stage_and_smoke_fits_15_minutes():
    for profile in JOB_PRESETS.values():
        assert tuple(profile.budgets_s) == STAGES
        assert [s.name for s in default_stages(profile)] == list(STAGES)
    smoke = JOB_PRESETS["smoke"]
    assert smoke.total_budget_s <= 15 * 60 - 60  # a minute to spare for start-up and contention
    assert smoke.budgets_s["chaos"] <= 7 * 60 and smoke.budgets_s["sweep"] <= 5.5 * 60
    assert smoke.budgets_s["capacity"] <= 2.5 * 60  # two searches, a third when one replica disagrees with the sweep
    # the sweep's budget holds its searches: one per configuration, bounded
    plan = build_plan(smoke.sweep_preset, **smoke.sweep)
    configs = len(plan.precisions) * len(plan.batch_sizes)
    assert plan.search and configs * plan.search_budget_s + plan.accuracy_budget_s < smoke.budgets_s["sweep"]
    capacity = smoke.capacity
    assert 2 * capacity["search_budget_s"] < smoke.budgets_s["capacity"]  # one replica, then two
    # capacity's probes are shaped as the sweep's, so their one-replica figures are measured alike
    assert (capacity["warmup_s"], capacity["window_s"]) == (plan.warmup_s, plan.window_s)
    assert all(f in smoke.matrix_note for f in smoke.faults) and all(t in smoke.matrix_note for t in smoke.topologies)


def test_profiles_name_real_experiments_and_valid_sweep_plans(tmp_path):
    from harness.chaos.matrix import MatrixPlan

    for profile in JOB_PRESETS.values():
        plan = MatrixPlan.from_args(faults=",".join(profile.faults) if profile.faults else None,
                                    topologies=",".join(profile.topologies), experiments_dir=None,
                                    preset=profile.chaos_preset, spec_file=None, retry=False, tier=None)
        assert plan.experiments and plan.topologies == list(profile.topologies)
        build_plan(profile.sweep_preset, **profile.sweep)
        settings = CapacitySettings.from_mapping(profile.capacity)
        validate_capacity_settings(settings)
        assert settings.target_rps == profile.capacity["target_rps"]


def test_the_job_package_imports_no_heavy_library_and_names_its_surface():
    import subprocess
    import sys

    import harness.job

    code = ("import sys, harness.job, harness.job.stages, harness.cli.run; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'locust', 'gevent', 'chaoslib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
    assert all(hasattr(harness.job, name) for name in harness.job.__all__)
    assert {"run_job", "JobResult", "StageResult", "JOB_PRESETS"} <= set(harness.job.__all__)


def test_line_writer_forwards_lines_and_never_loops():
    import io

    fallback = io.StringIO()
    seen: list[str] = []
    writer = LineWriter(lambda line: (seen.append(line), writer.write(f"echo {line}\n")), fallback=fallback)
    writer.write("one\ntw")
    writer.write("o\n\n")
    writer.write("three")
    writer.flush()
    assert seen == ["one", "two", "three"]
    assert fallback.getvalue() == "echo one\necho two\necho three\n"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_tiny_job_runs_every_stage_for_real_and_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    # `harness run tiny --out reports/tiny` as a user types it, with a relative --out (the README's `make
    # smoke` does the same): Locust once wrote the load stage's records to <out>/load/<out>/load/
    import psutil

    from harness.cli import main
    from harness.request_records import RequestRecord, read_records

    monkeypatch.chdir(tmp_path)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = main(["run", "tiny", "--out", "reports/tiny"])
    stdout, stderr = capsys.readouterr()
    lines = stderr.splitlines()
    out = tmp_path.resolve() / "reports" / "tiny"
    record = load_run(out)
    stages = record.summary["stages"]
    statuses = {name: stage["status"] for name, stage in stages.items()}
    why = [f"{name}: {stage['reason']}" for name, stage in stages.items()]
    assert not (out / "job-errors.log").exists(), (out / "job-errors.log").read_text()  # no wiring error anywhere
    assert [n for n in STAGES if statuses[n] != COMPLETED and n not in ("sweep", "capacity")] == [], why
    # sweep and capacity measure at the edge of what a busy 2-core machine can do: a measurement that
    # cannot be made is their (recorded) failure, exit 3, not the job's wiring
    assert statuses["sweep"] in (COMPLETED, FAILED) and statuses["capacity"] in (COMPLETED, FAILED), why
    assert code == record.summary["exit_code"] in ((0, 1) if set(statuses.values()) == {COMPLETED} else (3,)), why
    load = stages["load"]["summary"]
    assert load["requests"] > 0 and load["p99_ms"] is not None, load  # the real count, read from its records
    assert len(list(read_records(out / "load" / "requests.csv", RequestRecord))) == load["requests"]
    assert not (out / "load" / "reports").exists()
    for path in ("run.json", "preflight.json", "load/result.json", "load/requests.csv", "load/events.jsonl",
                 "chaos/matrix.csv", "chaos/matrix.md", "report.html", "report.md", "summary.json"):
        assert (out / path).is_file(), path
    if statuses["sweep"] == COMPLETED:
        assert (out / "sweep/sweep.csv").is_file() and (out / "sweep/sweep_summary.json").is_file()
    if statuses["capacity"] == COMPLETED:
        assert (out / "capacity/capacity.json").is_file()
    cell = next((out / "chaos").glob("*/*/result.json")).parent
    for name in ("timeline.csv", "requests.csv", "events.jsonl", "telemetry.csv", "journal.json"):
        assert (cell / name).is_file(), name
    assert {"load", "chaos"} <= set(record.parts) <= {"load", "chaos", "sweep", "capacity"}
    assert stdout.splitlines()[-1] == str(out / "report.html")
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # load, chaos timeline, telemetry, ...
    stage_table = (out / "report.md").read_text().split("## Job stages")[1].split("\n## ")[0]
    assert "Ran on the local platform" in stage_table
    assert all(f"| {name} | {statuses[name]} |" in stage_table for name in STAGES if name != "report")
    assert any("ETA" in line and "chaos:" in line for line in lines)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            break
        time.sleep(0.2)
    assert not left, [p.cmdline() for p in left]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_during_the_chaos_matrix_tears_everything_down_and_writes_the_report(tmp_path):
    import subprocess
    import sys
    import threading

    import psutil

    from harness.platforms.local.cgroups import owned_cgroup_dirs

    out = tmp_path / "tiny"
    cell = out / "chaos" / "pod-kill" / "single"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "tiny", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()

    descendants: list[psutil.Process] = []  # each child leads a session of its own: found as the harness's children

    def session_processes() -> list[psutil.Process]:
        found = []
        for p in [*psutil.process_iter(), *descendants]:
            try:
                if p.pid != proc.pid and p.status() != psutil.STATUS_ZOMBIE and (
                        p in descendants or os.getsid(p.pid) == proc.pid) and p not in found:
                    found.append(p)
            except (OSError, psutil.Error):
                continue
        return found

    try:
        deadline = time.monotonic() + 150
        while not (cell / "timeline.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the cell is deployed and measured from here: replicas, load, prober all running
        assert (cell / "timeline.csv").exists(), "".join(lines)[-3000:]
        time.sleep(1.0)
        descendants.extend(psutil.Process(proc.pid).children(recursive=True))  # replicas, balancer, load, prober
        assert len(descendants) >= 3, [p.cmdline() for p in descendants]
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
        stdout, _ = proc.communicate(timeout=120)
        reader.join(timeout=10)
        text = "".join(lines)
        assert proc.returncode == EXIT_INTERRUPTED, text[-3000:]
        record = load_run(out)
        assert record.status == "aborted"
        stages = record.summary["stages"]
        assert stages["chaos"]["status"] == ABORTED
        assert stages["sweep"]["status"] == SKIPPED and stages["capacity"]["status"] == SKIPPED
        assert stages["report"]["status"] == COMPLETED
        assert (out / "report.html").is_file() and stdout.strip().endswith("report.html")
        assert (out / "load" / "result.json").is_file()  # what finished before the interrupt is kept
        deadline = time.monotonic() + 20
        while session_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_processes(), [p.cmdline() for p in session_processes()]
        assert owned_cgroup_dirs(proc.pid) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for p in session_processes():
            p.kill()


@pytest.mark.slow
def test_tiny_job_runs_against_a_teams_own_server_and_skips_what_needs_the_reference_service(tmp_path, monkeypatch, capsys):
    # `harness run tiny --spec toy.yaml` as a user types it: their server as a command target speaking its own
    # protocol (generic JSON to /predict), from the spec file's folder
    from harness.cli import main
    from harness.job import COMPLETED, SKIPPED
    from harness.job.stages import OWN_SPEC_SKIPS
    from harness.request_records import RequestRecord, read_records

    from .platforms.local.toy_server import spec_yaml, write_server

    write_server(tmp_path / "server")
    spec = spec_yaml().replace("  liveness_path: /health\n",
                               "  liveness_path: /health\n  protocol: {protocol: http-json, path: /predict}\n", 1)
    (tmp_path / "toy.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "tiny", "--spec", "toy.yaml", "--out", "reports/toy"])
    stdout, stderr = capsys.readouterr()
    out = tmp_path.resolve() / "reports" / "toy"
    stages = load_run(out).summary["stages"]
    why = {name: (stage["status"], stage["reason"]) for name, stage in stages.items()}
    assert {name: stages[name]["status"] for name in OWN_SPEC_SKIPS} == {name: SKIPPED for name in OWN_SPEC_SKIPS}, why
    assert all(stages[name]["reason"] == OWN_SPEC_SKIPS[name] for name in OWN_SPEC_SKIPS)
    assert [stages[n]["status"] for n in ("preflight", "deploy", "load", "chaos", "report")] == [COMPLETED] * 5, why
    assert code in (0, 1), stderr[-2000:]  # a verdict, not an error
    assert "command target toy" in stderr and "http-json" in stderr  # what was deployed and what it was sent
    records = list(read_records(out / "load" / "requests.csv", RequestRecord))
    assert records and all(r.ok for r in records) and stages["load"]["summary"]["requests"] == len(records)
    cell = json.loads(next((out / "chaos").glob("pod-kill/*/result.json")).read_text())
    assert cell["spec"]["target"]["protocol"]["protocol"] == "http-json"
    assert cell["recovered"] is True and cell["ttr_s"] > 0 and cell["outcome"] in ("met", "not met")
    assert cell["outage_s"] is not None and cell["unavailability_s"] > 0 and cell["tier"] == "single-point"
    assert cell["behaviour_seen"] is True  # Exited 137, Started, Ready: the platform restarted their server
    report = (out / "report.md").read_text()
    assert OWN_SPEC_SKIPS["sweep"] in report and OWN_SPEC_SKIPS["capacity"] in report
    assert stdout.splitlines()[-1] == str(out / "report.html")
