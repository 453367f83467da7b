"""End-to-end tests of the harness's pytest plugin with `pytester`: options, markers, skips, verdicts, report.

Nothing here measures live: scenarios judge saved parts (``--harness-replay``) built with the real
result, SLA and sweep code, so each inner pytest run takes a second or two.
"""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.jsonfile import read_json

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ("-p", "harness.pytest_plugin")


@pytest.fixture(scope="module", autouse=True)
def _libraries_imported_once() -> None:
    """Import here what the inner runs import: pytester drops modules first imported inside a run, and
    C extensions (numpy.fft, torch) cannot be loaded a second time in one process."""
    import chaoslib.loader  # noqa: F401
    import kubernetes.client  # noqa: F401
    import scipy.stats  # noqa: F401

    import harness.report.compare  # noqa: F401
    import harness.report.writer  # noqa: F401
    from harness.environment import torch_info

    torch_info()


def _chaos_cell(root: Path, experiment: str, topology: str, *, outage_s: float, p99_ms: float) -> dict:
    """Save the result of one chaos cell as `harness chaos run` writes it: a 50 ms prober that fails for
    ``outage_s`` after the injection, requests whose steady p99 is ``p99_ms``, the verdict by harness.measure.sla."""
    from harness.chaos.experiment import load_experiment
    from harness.chaos.result import build_result
    from harness.jsonfile import write_json
    from harness.measure.recovery import analyze_recovery
    from harness.measure.sla import evaluate_fault
    from harness.measure.sla_config import TIER_FOR_TOPOLOGY, SlaConfig
    from harness.request_records import ProbeSample, RequestRecord

    injected, end = 1000.0, 1000.0 + outage_s + 10.0
    timeline = [ProbeSample(t, not injected <= t < injected + outage_s, 12.0, 200 if not injected <= t < injected + outage_s else 0)
                for t in (990.0 + 0.05 * i for i in range(int((end - 990.0) / 0.05)))]
    requests = [RequestRecord(s.t_s, s.t_s, p99_ms if i % 50 == 0 else 12.0, s.status, s.ok) for i, s in enumerate(timeline)]
    recovery = analyze_recovery(timeline, injected_at_s=injected, slo_latency_ms=500.0, stability_window_s=1.0,
                                requests=requests, baseline_s=5.0)
    extension = load_experiment(ROOT / "experiments" / f"{experiment}.json", validate=False).extension
    tier = TIER_FOR_TOPOLOGY[topology]
    verdict = evaluate_fault(recovery, fault=experiment, config=SlaConfig(required_tier=tier),
                             expected_alerts=extension.expect_alerts, telemetry=None)
    journal = {"status": "completed", "deviated": False,
               "run": [{"activity": {"type": "action", "name": "inject"}, "status": "succeeded", "output": {}}]}
    result = build_result(
        experiment=experiment, fault=experiment, topology=topology, profile="smoke", injected_at=injected,
        target_replica="reference-0", recovery=recovery, verdict=verdict, tier=tier,
        journal=journal, behaviour_findings=[], aborted=False, phase="recovery",
    )
    write_json(root / "chaos" / experiment / topology / "result.json", result)
    return result


def _sweep(path: Path, p99_ms: float, seed: int) -> None:
    """Save a sweep part (sweep.csv and sweep_summary.json) of 2 configurations x 2 rates x 5 windows."""
    import random

    from harness.jsonfile import write_json
    from harness.sweep.grid import PointKey, SweepCsvWriter, WindowMeasurement, build_plan, read_sweep_csv
    from harness.sweep.summary import summarize_sweep

    plan = build_plan("smoke", precisions=("fp32", "bf16"), batch_sizes=(32,), load_levels=(50.0, 150.0))
    noise = random.Random(seed)
    path.mkdir(parents=True)
    with SweepCsvWriter(path / "sweep.csv", plan) as writer:
        for precision in plan.precisions:
            for level in plan.load_levels:
                for repeat in range(1, 6):
                    p99 = p99_ms * (1 + noise.uniform(-0.03, 0.03))
                    window = WindowMeasurement(throughput_rps=level * (1 + noise.uniform(-0.01, 0.01)), p50_ms=p99 / 3,
                                               p95_ms=p99 * 0.8, p99_ms=p99, error_rate=0.0, requests=int(level * 3),
                                               sent_rate_rps=level)
                    writer.write(PointKey(precision, 32, level), repeat, window, "ok")
    rows = list(read_sweep_csv(path / "sweep.csv"))
    write_json(path / "sweep_summary.json", summarize_sweep(rows, p99_ms=plan.p99_ms))


@pytest.fixture
def smoke_matrix(tmp_path: Path) -> Path:
    """A saved run of every smoke cell: a single replica's 2.6 s restart fits single-point's budget; oom-kill on
    multi-active misses several ways (45 s to recover, over the budget, an unexpected p99 alert)."""
    from harness.scenarios.chaos import resilience_cases

    root = tmp_path / "recorded"
    for case in resilience_cases("smoke"):
        if case.topology == "single":
            _chaos_cell(root, case.experiment, case.topology, outage_s=2.6, p99_ms=80.0)
        elif (case.experiment, case.topology) == ("oom-kill", "multi-active"):
            _chaos_cell(root, case.experiment, case.topology, outage_s=45.0, p99_ms=800.0)
        else:
            _chaos_cell(root, case.experiment, case.topology, outage_s=0.0, p99_ms=90.0)
    return root


def _scenario(pytester: pytest.Pytester, name: str) -> None:
    pytester.makepyfile(**{name: (ROOT / "scenarios" / f"{name}.py").read_text(encoding="utf-8")})


@pytest.mark.parametrize("preset_flag", ["--harness-preset", "--harness-profile"])  # --harness-profile: its former name
def test_options_are_parsed_and_handed_to_the_fixtures(pytester: pytest.Pytester, tmp_path: Path, preset_flag: str) -> None:
    base = tmp_path / "base"
    base.mkdir()
    pytester.makepyfile(f"""
        from pathlib import Path

        def test_options(harness_options, baseline):
            assert harness_options.preset == "nightly"
            assert harness_options.platform == "local"
            assert harness_options.tier == "active-standby"
            assert baseline == Path({str(base)!r})
    """)
    result = pytester.runpytest(*PLUGIN, preset_flag, "nightly", "--harness-tier", "active-standby",
                                "--harness-baseline", str(base))
    result.assert_outcomes(passed=1)


def test_path_options_are_resolved_where_pytest_was_started(pytester: pytest.Pytester) -> None:
    (pytester.path / "base").mkdir()
    pytester.makepyfile("""
        from pathlib import Path

        def test_paths(harness_options, run_dir):
            here = Path.cwd().resolve()
            assert harness_options.baseline == here / "base" and harness_options.report_dir == here / "rel" / "out"
            assert run_dir == here / "rel" / "out"
    """)
    result = pytester.runpytest(*PLUGIN, "--harness-baseline", "base", "--harness-report-dir", "rel/out")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest(*PLUGIN, "--harness-report-dir", "")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-report-dir='': an empty path*"])


def test_a_bad_option_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--harness-tier", "gold")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-tier='gold': unknown tier; choose one of single-point*"])
    result = pytester.runpytest(*PLUGIN, "--harness-baseline", str(pytester.path / "missing"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-baseline=*missing*: not a directory*"])


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.chaos
        @pytest.mark.perf
        @pytest.mark.capacity
        def test_marked():
            pass
    """)
    result = pytester.runpytest(*PLUGIN, "--markers")
    for name in ("chaos", "perf", "capacity", "gpu", "kubernetes"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{name}:*"])
    pytester.runpytest(*PLUGIN, "--strict-markers").assert_outcomes(passed=1)


def test_gpu_tests_are_skipped_without_cuda_with_the_reason(pytester: pytest.Pytester) -> None:
    from harness.scenarios.session import cuda_unavailable_reason

    pytester.makepyfile("import pytest\n\n@pytest.mark.gpu\ndef test_on_gpu():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "-rs")
    if cuda_unavailable_reason() is None:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED*gpu: no CUDA GPU*"])


def test_kubernetes_tests_are_skipped_without_a_cluster(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(pytester.path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.kubernetes
        def test_on_cluster():
            pass

        @pytest.mark.chaos
        def test_scenario(harness_run):
            pass
    """)
    result = pytester.runpytest(*PLUGIN, "-rs", "--harness-platform", "kubernetes",
                                "--harness-report-dir", str(pytester.path / "out"))
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*kubernetes: no Kubernetes cluster configured*"])


def test_an_sla_violation_fails_listing_every_violation(pytester: pytest.Pytester, smoke_matrix: Path) -> None:
    out = pytester.path / "out"
    pytester.makepyfile("""
        import pytest

        @pytest.mark.chaos
        def test_oom_kill_on_multi_active(chaos):
            outcome = chaos.prepare("oom-kill", topology="multi-active").inject()
            outcome.expect_behaviour()
            outcome.expect_tier()
    """)
    result = pytester.runpytest(*PLUGIN, "--harness-replay", str(smoke_matrix), "--harness-report-dir", str(out),
                                "--junitxml", str(pytester.path / "junit.xml"))
    result.assert_outcomes(failed=1)
    violations = read_json(smoke_matrix / "chaos" / "oom-kill" / "multi-active" / "result.json")["reasons"]
    assert violations[0] == "multi-active: recovery took 45.01 s > 30 s allowed by multi-active"
    assert any("over budget" in v for v in violations)
    assert violations[-1] == "unexpected alert: p99 latency 800.0 ms > 500 ms"
    result.stdout.fnmatch_lines([f"*SlaNotMet: oom-kill on multi-active: SLA tier multi-active not met ({len(violations)}):",
                                 *[f"*  - {v}" for v in violations]])
    failure = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase/failure")
    assert violations[0] in failure.get("message")  # the message attribute is cut short; the text has them all
    assert all(v in failure.text for v in violations), failure.text
    section = next(s for s in read_json(out / "summary.json")["sections"] if s["kind"] == "chaos")
    assert section["failed"] and all(v in section["findings"] for v in violations)


def test_the_smoke_resilience_suite_judges_every_cell(pytester: pytest.Pytester, smoke_matrix: Path) -> None:
    out = pytester.path / "out"
    junit = pytester.path / "junit.xml"
    _scenario(pytester, "test_resilience")
    result = pytester.runpytest(*PLUGIN, "-rfxX", "--harness-profile", "smoke", "--harness-replay", str(smoke_matrix),
                                "--harness-report-dir", str(out), f"--junitxml={junit}")
    cells = [p.relative_to(smoke_matrix).parent.as_posix() for p in smoke_matrix.rglob("result.json")]
    # a single replica's restart fits single-point's error budget: those cells pass; oom-kill on multi-active fails
    result.assert_outcomes(passed=len(cells) - 1, failed=1)
    result.stdout.fnmatch_lines(["E*SlaNotMet: oom-kill on multi-active: SLA tier multi-active not met (*):",
                                 "FAILED*oom-kill-multi-active*"])
    result.stdout.fnmatch_lines(["*harness report*", f"report: {out / 'report.html'}"])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(cells)), "1", "0")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["harness_report"] == str(out / "report.html")
    record = read_json(out / "run.json")
    assert record["kind"] == "run" and record["status"] == "failed" and record["preset"] == "smoke"
    assert record["summary"]["tests"] == {"passed": len(cells) - 1, "failed": 1, "skipped": 0,
                                          "xfailed": 0, "xpassed": 0, "error": 0}
    assert sorted(record["parts"]) == sorted(cells)
    matrix = (out / "chaos" / "matrix.csv").read_text(encoding="utf-8").splitlines()
    assert len(matrix) == len(cells) + 1 and matrix[0].startswith("fault,topology")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Resilience matrix: fault x topology" in html and "recovery took 45.01 s" in html


def test_a_part_missing_from_the_replayed_run_is_skipped_with_the_reason(pytester: pytest.Pytester, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    pytester.makepyfile("""
        def test_cell(chaos):
            chaos.prepare("pod-kill", topology="single").inject()
    """)
    result = pytester.runpytest(*PLUGIN, "-rs", "--harness-replay", str(empty), "--harness-report-dir",
                                str(pytester.path / "out"))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*has no part 'chaos/pod-kill/single'*"])


def test_a_sweep_against_the_baseline_is_shown_but_never_judged_on_its_windows(pytester: pytest.Pytester,
                                                                            tmp_path: Path) -> None:
    # a sweep point's repeats are windows inside one run, not rounds: run-to-run noise is not sampled,
    # so even a 2.5x p99 is shown as inconclusive rather than failing the scenario on windows
    current, base, out = tmp_path / "current", tmp_path / "base", pytester.path / "out"
    _sweep(current / "sweep", p99_ms=150.0, seed=1)
    _sweep(base / "sweep", p99_ms=60.0, seed=2)
    _scenario(pytester, "test_performance")
    result = pytester.runpytest(*PLUGIN, "-rs", "--harness-replay", str(current),
                                "--harness-baseline", str(base), "--harness-report-dir", str(out))
    # the steady-load scenario needs a live deployment: skipped when replaying
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*a live deployment cannot be replayed*"])
    comparison = read_json(out / "summary.json")["comparison"]
    assert comparison["regressions"] == [] and comparison["rows"]
    p99 = [row for row in comparison["rows"] if row["metric"].endswith(":p99_ms")]
    assert p99 and all(row["verdict"] == "inconclusive" and "windows inside one run" in row["reason"] for row in p99)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Comparison with the baseline" in html and "run-to-run noise" in html


def test_the_baseline_scenario_is_skipped_without_a_baseline(pytester: pytest.Pytester, tmp_path: Path) -> None:
    current = tmp_path / "current"
    _sweep(current / "sweep", p99_ms=60.0, seed=1)
    _scenario(pytester, "test_performance")
    result = pytester.runpytest(*PLUGIN, "-rs", "--harness-replay", str(current),
                                "--harness-report-dir", str(pytester.path / "out"))
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*no --harness-baseline given*"])


def test_no_run_directory_is_written_when_no_harness_fixture_is_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert "harness report" not in result.stdout.str()


def test_a_report_dir_holding_a_run_is_refused(pytester: pytest.Pytester, smoke_matrix: Path) -> None:
    out = pytester.path / "out"
    shutil.copytree(smoke_matrix, out)
    (out / "run.json").write_text(json.dumps({"schema_version": "1.0", "kind": "run"}), encoding="utf-8")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--harness-report-dir", str(out))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-report-dir=*already holds a run*"])


def test_locust_is_never_imported_in_the_pytest_process() -> None:
    # every inner run above went through the plugin and the scenario classes in this process
    assert "locust" not in sys.modules and "gevent" not in sys.modules
