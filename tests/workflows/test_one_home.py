"""Each workflow has one home (`harness.workflows`), and the entry points call it rather than compose it.

A newcomer asking "where does `harness load` happen?" finds one definition: ``run_load`` is defined
once in the package, in `harness.workflows.load`, and the CLI, the main job and the scenarios call it;
none of them reaches past it to the pieces it composes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "harness"

HOMES = {
    "run_load": "workflows/load.py",
    "run_sweep": "workflows/sweep.py",
    "run_capacity": "workflows/capacity.py",
    "run_matrix": "workflows/matrix.py",
    "ChaosRun": "workflows/chaos.py",
}
# what a workflow composes, that no entry point (CLI, main job, scenarios) may call itself
COMPOSED = {"run_session", "run_rounds", "measure_sweep", "measure_capacity", "LocalSweepBackend"}
ENTRY_POINTS = ("cli/", "job/", "scenarios/", "pytest_plugin.py", "__main__.py")


def _definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in HOMES:
                found.setdefault(node.name, []).append(path.relative_to(PACKAGE).as_posix())
    return found


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_workflow_is_defined_once_in_its_home(name):
    assert _definitions().get(name) == [HOMES[name]]


def test_no_entry_point_composes_a_workflow_itself():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(ENTRY_POINTS):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
                offenders += [f"{relative}:{node.lineno} imports {a.name}" for a in node.names if a.name in COMPOSED]
    assert offenders == []
