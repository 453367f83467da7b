"""`harness chaos`: bad input exits 2 naming the field; the verdict maps to exit 0/1/130; spec and
validate print what they should. No deployment is started here (ChaosRun is replaced where needed)."""

from __future__ import annotations

import shutil

import yaml
import pytest

from harness.chaos.matrix import MatrixTable
from harness.cli import main
from harness.request_records import RequestRecord, read_records
from harness.workflows import chaos as chaos_workflow

from .helpers import ROOT, assert_nothing_left


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    "argv, field",
    [
        (["chaos", "run", "pod-kill", "--topology", "triple", "--out", "x"], "topology"),
        (["chaos", "run", "pod-kill", "--preset", "weekly", "--out", "x"], "preset"),
        (["chaos", "run", "pod-kill", "--profile", "weekly", "--out", "x"], "preset"),  # its former name still works
        (["chaos", "run", "no-such-fault", "--out", "x"], "experiment"),
        (["chaos", "run", "pod-kill", "--tier", "gold", "--out", "x"], "tier"),
        (["chaos", "matrix", "--faults", "pod-kill,nope", "--out", "x"], "faults"),
        (["chaos", "matrix", "--topologies", "single,ring", "--out", "x"], "topologies"),
    ],
)
def test_bad_input_exits_2_naming_the_field(argv, field, capsys, tmp_path):
    argv = [a if a != "x" else str(tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{field}=" in err, err
    assert not (tmp_path / "out").exists()  # nothing was deployed


def test_an_invalid_experiment_file_names_the_activity(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "t", "description": "d", "method": [{"type": "action", "name": "x"}],'
                   ' "extensions": [{"name": "harness", "fault": "bad"}]}')
    assert main(["chaos", "validate", str(bad)]) == 2
    assert "method[0]=" in capsys.readouterr().err


def test_validate_and_spec(capsys):
    assert main(["chaos", "validate", "experiments/oom-kill.json", "experiments/kubernetes/pod-kill.json"]) == 0
    assert "valid (oom-kill" in capsys.readouterr().out
    assert main(["chaos", "spec", "oom-kill", "--topology", "multi-active"]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    assert spec["topology"] == "multi-active" and spec["replicas"] == 2
    assert spec["resources"]["limits.memory"] == "1Gi"  # the experiment's own overlay
    assert spec["probes"]["readiness"]["periodSeconds"] == 0.25  # the smoke profile's base


def _fake_run(result):
    class FakeRun:
        def __init__(self, settings, progress=None):
            self.settings = settings

        def execute(self):
            return {"experiment": "pod-kill", "topology": self.settings.topology, "tier": "single-point", **result}

    return FakeRun


@pytest.mark.parametrize(
    "result, code",
    [
        ({"outcome": "met", "aborted": False, "reasons": []}, 0),
        ({"outcome": "not met", "aborted": False,
          "reasons": ["expected alert memory-growth did not fire: monitoring would miss this fault"]}, 1),
        # the data cannot tell: said on the terminal, and not a failure
        ({"outcome": "inconclusive", "aborted": False, "reasons": ["multi-active: failed requests: too few samples to tell"]}, 0),
        ({"outcome": "error", "aborted": False, "reasons": ["no measurement: the run ended in phase 'deploy'"]}, 1),
        ({"outcome": "aborted", "aborted": True, "reasons": []}, 130),
    ],
)
def test_the_verdict_is_the_exit_code(monkeypatch, capsys, tmp_path, result, code):
    monkeypatch.setattr(chaos_workflow, "ChaosRun", _fake_run(result))
    assert main(["chaos", "run", "pod-kill", "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err
    for reason in result["reasons"]:
        assert reason in err


def test_matrix_table_lists_every_cell_that_missed(tmp_path):
    table = MatrixTable(topologies=["single", "multi-active"], retry=True)
    table.rows = [
        {"fault": "pod-kill", "topology": "single", "ttr_s": 3.0, "recovered": True, "outage_s": 2.5,
         "unavailability_s": 3.0, "failed_requests": 60, "total_requests": 120, "projected_burn": 0.0035,
         "tier": "single-point", "outcome": "not met", "reason": "unexpected alert: p99 latency 900.0 ms > 500 ms"},
        {"fault": "pod-kill", "topology": "multi-active", "ttr_s": 0.0, "recovered": True, "outage_s": 0.0,
         "unavailability_s": 0.05, "failed_requests": 0, "total_requests": 130, "projected_burn": 0.0,
         "tier": "multi-active", "outcome": "inconclusive", "reason": "too few samples to tell"},
    ]
    table.write(tmp_path)
    markdown = (tmp_path / "matrix.md").read_text()
    assert ("| pod-kill | TTR 3.0 s / outage 2.5 s / unavailable 3.0 s / 60 of 120 / burn 0.35% / single-point NOT met | "
            "TTR 0.0 s / outage 0.0 s / unavailable 0.1 s / 0 of 130 / burn 0.00% / multi-active inconclusive |") in markdown
    assert table.failed_cells() == ["pod-kill x single: unexpected alert: p99 latency 900.0 ms > 500 ms"]
    assert table.inconclusive_cells() == ["pod-kill x multi-active: too few samples to tell"]
    assert (tmp_path / "matrix.csv").read_text().splitlines()[0].startswith("fault,topology,retry,outcome,ttr_s")


@pytest.mark.parametrize(
    "argv, field",
    [
        (["chaos", "matrix", "--platform", "kubernetes", "--out", "x"], "--spec"),
        (["chaos", "matrix", "--namespace", "nightly", "--out", "x"], "--namespace"),
        (["chaos", "matrix", "--platform", "kubernetes", "--spec", "SPEC", "--topologies", "single", "--out", "x"],
         "topologies"),
        (["chaos", "run", "pod-kill", "--platform", "kubernetes", "--spec", "SPEC", "--endpoint", "reference:8000",
          "--out", "x"], "--endpoint"),
        (["chaos", "matrix", "--platform", "kubernetes", "--spec", "SPEC", "--faults", "pod-kill", "--retry",
          "--out", "x"], "--retry"),
    ],
)
def test_bad_kubernetes_input_exits_2_naming_the_field(argv, field, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_SPEC", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text("topology: active-standby\n")
    argv = [str(tmp_path / "out") if a == "x" else str(spec) if a == "SPEC" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{field}=" in err, err
    assert not (tmp_path / "out").exists()


def test_kubernetes_matrix_plan_tests_the_applied_topology_with_the_kubernetes_experiments(tmp_path):
    from harness.chaos.matrix import MatrixPlan
    from harness.platforms.target import PlatformTarget

    spec = tmp_path / "spec.yaml"
    spec.write_text("topology: active-standby\n")
    target = PlatformTarget.resolve("kubernetes", spec=spec, environ={})
    plan = MatrixPlan.from_args(faults="pod-kill,oom-kill", topologies=None, experiments_dir=None, preset="smoke",
                                spec_file=None, retry=False, tier=None, target=target)
    assert plan.topologies == ["active-standby"]
    assert sorted(e.path.parent.name for e in plan.experiments) == ["kubernetes", "kubernetes"]
    assert all("kubernetes" in e.extension.platforms for e in plan.experiments)


def test_kubernetes_matrix_refuses_an_experiment_that_changes_the_spec_before_any_cell(tmp_path):
    import json

    from harness.chaos.matrix import MatrixPlan
    from harness.errors import ConfigError
    from harness.platforms.target import PlatformTarget

    document = json.loads((ROOT / "experiments" / "kubernetes" / "pod-kill.json").read_text())
    next(e for e in document["extensions"] if e["name"] == "harness")["spec"] = {"terminationGracePeriodSeconds": 5}
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "pod-kill.json").write_text(json.dumps(document))
    spec = tmp_path / "spec.yaml"
    spec.write_text("topology: multi-active\nreplicas: 2\n")
    target = PlatformTarget.resolve("kubernetes", spec=spec, environ={})
    with pytest.raises(ConfigError) as err:
        MatrixPlan.from_args(faults=None, topologies=None, experiments_dir=experiments, preset="smoke", spec_file=None,
                             retry=False, tier=None, target=target)
    assert err.value.field == "extensions[harness].spec" and err.value.source == str(experiments / "pod-kill.json")


@pytest.mark.slow
def test_a_run_with_relative_paths_writes_its_records_where_the_user_asked(tmp_path, monkeypatch, capsys):
    # the experiment file and --out both relative to where the user stands, as in `harness chaos run
    # experiments/pod-kill.json --out reports/pod-kill`; the load generator runs in --out
    shutil.copy(ROOT / "experiments" / "pod-kill.json", tmp_path / "pod-kill.json")
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["chaos", "run", "pod-kill.json", "--topology", "single", "--profile", "smoke", "--out", "rel/dir"])
    finally:
        assert_nothing_left(tmp_path / "rel" / "dir")
    assert code in (0, 1), capsys.readouterr().err[-3000:]  # one replica may miss its tier: still a finished run
    out = tmp_path / "rel" / "dir"
    records = list(read_records(out / "requests.csv", RequestRecord))
    assert records and (out / "result.json").is_file() and (out / "timeline.csv").is_file()
    assert not (out / "rel").exists()


def test_an_sla_file_reaches_the_run_and_a_bad_one_is_refused_before_it(monkeypatch, capsys, tmp_path):
    seen = []

    class Recording:
        def __init__(self, settings, progress=None):
            seen.append(settings)

        def execute(self):
            return {"experiment": "pod-kill", "topology": "single", "tier": "single-point", "outcome": "met",
                    "aborted": False, "reasons": []}

    monkeypatch.setattr(chaos_workflow, "ChaosRun", Recording)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sla.yaml").write_text("sla:\n  period_days: 7\n  fault_rates_per_day: {pod-kill: 0.5}\n")
    assert main(["chaos", "run", "pod-kill", "--sla", "sla.yaml", "--out", "out"]) == 0
    assert seen[0].sla.faults_per_period("pod-kill") == 3.5
    (tmp_path / "bad.yaml").write_text("sla:\n  period_days: -7\n")
    assert main(["chaos", "run", "pod-kill", "--sla", "bad.yaml", "--out", "out2"]) == 2
    assert "period_days=-7" in capsys.readouterr().err and len(seen) == 1
