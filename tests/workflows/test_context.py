"""`harness.workflows.context.RunContext`: the one composition of a run (output directory, platform, spec,
SLO, progress, parent record) that the CLI, the main job and the scenarios build and the workflows take."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_spec
from harness.errors import ConfigError
from harness.slo import Slo
from harness.workflows.context import RunContext

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
WORKFLOWS = ("workflows/load.py", "workflows/sweep.py", "workflows/capacity.py", "workflows/chaos.py",
             "workflows/matrix.py")
BUILDERS = ("cli/load.py", "cli/sweep.py", "cli/capacity.py", "cli/chaos.py", "job/stages.py", "scenarios/perf.py",
            "scenarios/chaos.py")


def test_a_relative_out_dir_is_made_absolute_once_when_the_context_is_built(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    context = RunContext("rel/run")
    assert context.out_dir == tmp_path / "rel" / "run" and context.out_dir.is_absolute()
    monkeypatch.chdir(tmp_path / "..")  # a later working directory (a child's cwd=) changes nothing
    assert context.out_dir == tmp_path / "rel" / "run"
    part = context.part("load", spec=load_spec(None))
    assert part.out_dir == tmp_path / "rel" / "run" / "load" and part.spec is not None and context.spec is None


def test_a_context_refuses_what_no_workflow_could_use():
    with pytest.raises(ConfigError, match="out_dir=''"):
        RunContext("")
    with pytest.raises(ConfigError, match="spec=None"):
        RunContext("x").require_spec()
    with pytest.raises(ConfigError, match="slo=500"):
        RunContext("x", slo=500)  # type: ignore[arg-type]


def test_progress_and_parent_travel_with_every_part(tmp_path):
    lines: list[str] = []
    parent = object()
    context = RunContext(tmp_path, platform="kubernetes", slo=Slo(250.0), progress=lines.append, parent=parent)
    part = context.part("sweep")
    part.say("one line")
    assert lines == ["one line"] and part.parent is parent and part.platform == "kubernetes" and part.slo == Slo(250.0)


@pytest.mark.parametrize("name", ["run_load", "run_sweep", "run_capacity", "ChaosRun", "run_matrix"])
def test_each_workflow_takes_the_context_instead_of_its_pieces(name):
    import harness.workflows.capacity
    import harness.workflows.chaos
    import harness.workflows.load
    import harness.workflows.matrix
    import harness.workflows.sweep

    function = {"run_load": harness.workflows.load.run_load, "run_sweep": harness.workflows.sweep.run_sweep,
                "run_capacity": harness.workflows.capacity.run_capacity, "ChaosRun": harness.workflows.chaos.ChaosRun,
                "run_matrix": harness.workflows.matrix.run_matrix}[name]
    parameters = inspect.signature(function).parameters
    assert "context" in parameters
    assert not {"out_dir", "parent", "progress", "platform", "spec", "slo"} & set(parameters)


def _calls(relative: str, name: str) -> list[int]:
    tree = ast.parse((PACKAGE / relative).read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


@pytest.mark.parametrize("relative", WORKFLOWS)
def test_no_workflow_resolves_its_output_directory_again(relative):
    assert _calls(relative, "resolve_path") == [], "the context resolved it once; use context.out_dir"


@pytest.mark.parametrize("relative", BUILDERS)
def test_each_entry_point_composes_a_context_for_the_workflow_it_calls(relative):
    assert _calls(relative, "RunContext") or _calls(relative, "run_context"), relative


def test_a_load_under_a_relative_context_writes_where_the_context_was_built(tmp_path, monkeypatch):
    from harness.results import load_run
    from harness.workflows.load import LoadSettings, run_load
    from harness.load.session import RateLoad

    def session(deployment: Any, load: Any, out: Path, **options: Any) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        result = {"requests": 10, "ok": 10, "errors": 0, "p99_ms": 5.0, "throughput_rps": 2.0, **options["metadata"]}
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
        return result

    monkeypatch.setattr("harness.load.session.run_session", session)
    monkeypatch.setattr("harness.platforms.base.copy_events", lambda deployment, out: None)
    monkeypatch.chdir(tmp_path)
    context = RunContext("rel/load", spec=load_spec(None))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = run_load(LoadSettings(load=RateLoad(2.0, 5.0), telemetry=False), context, deployment=object())
    assert run.out_dir == tmp_path / "rel" / "load" and load_run(tmp_path / "rel" / "load").kind == "load"
    assert not (tmp_path / "elsewhere" / "rel").exists()
