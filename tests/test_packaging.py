"""How the package installs: extras (`harness.extras`), a core install without torch or the Kubernetes
client, and the pytest plugin registered through its ``pytest11`` entry point.

A core install is stood in for by a child interpreter in which the extras' modules cannot be
imported (a `sys.meta_path` finder refuses them), so the test needs no second virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness.extras import EXTRAS, MissingExtra, missing_modules, require_extra

from .report.conftest import write_run

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = sorted({module for modules in EXTRAS.values() for module in modules} | {"httptools"})

# Runs harness's CLI with the extras' modules refused, then reports which of them (and locust) got imported.
_CORE_CHILD = """
import json, sys
BLOCKED = set(json.loads(sys.argv[1]))
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (a core install)")
sys.meta_path.insert(0, _Refuse())
from harness.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in BLOCKED | {"locust"} if m in sys.modules)
print("LOADED=" + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def _core_harness(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CORE_CHILD, json.dumps(OPTIONAL), *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def _loaded(result: subprocess.CompletedProcess) -> list[str]:
    line = next(line for line in result.stderr.splitlines() if line.startswith("LOADED="))
    return json.loads(line.removeprefix("LOADED="))


# ----- extras ------------------------------------------------------------------------------------------

def test_installed_extras_are_found():
    assert missing_modules("service") == [] and missing_modules("kubernetes") == []
    require_extra("service", "the test")  # returns


def test_a_missing_extra_is_one_line_naming_it_and_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what an import of torch would then refuse
    assert missing_modules("service") == ["torch"]
    with pytest.raises(MissingExtra) as caught:
        require_extra("service", "deploying the reference service")
    assert str(caught.value) == ("deploying the reference service needs the 'service' extra (torch not installed): "
                                 "pip install 'gpu-inference-harness[service]'")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_pyproject_extras_install_what_the_harness_imports():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "torch" not in core and "kubernetes" not in core and "starlette" not in core and "[standard]" not in core
    assert any(d.startswith("torch>=") and "<" in d for d in extras["service"]), "torch as a range, never pinned"
    assert {d.split(">")[0] for d in extras["kubernetes"]} == {"kubernetes", "chaostoolkit-kubernetes"}
    assert set(EXTRAS) <= set(extras)


def test_pytest_is_a_core_dependency_as_the_package_registers_a_pytest_plugin():
    import tomllib

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "pytest11" in pyproject["project"]["entry-points"]
    core = {req.name: req for req in map(Requirement, pyproject["project"]["dependencies"])}
    assert "pytest" in core, "a pytest11 plugin needs pytest installed: declare it in the core dependencies"
    assert core["pytest"].specifier and not any(s.operator == "==" for s in core["pytest"].specifier), "a range, never a pin"
    assert "7.0" in core["pytest"].specifier and "6.2" not in core["pytest"].specifier  # pytest.Config and friends: 7+


# ----- a core install: render, report and compare without torch or kubernetes ------------------------------

def test_render_report_and_compare_run_without_the_extras(tmp_path):
    current, baseline = write_run(tmp_path / "current", seed=1), write_run(tmp_path / "baseline", seed=2)

    rendered = _core_harness("render", "--out", str(tmp_path / "k8s"), "--runner", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert any(line.endswith(".yaml") for line in rendered.stdout.splitlines())

    report = _core_harness("report", str(current), "--baseline", str(baseline), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (current / "report.html").is_file() and (current / "summary.json").is_file()

    compare = _core_harness("compare", str(current), "--baseline", str(baseline), "--json", cwd=tmp_path)
    assert compare.returncode in (0, 1), compare.stderr  # 1: a regression found; either way it ran
    assert json.loads(compare.stdout)["baseline"] == str(baseline)

    for result in (rendered, report, compare):
        assert _loaded(result) == [], "a core command imported an extra's module (or locust)"


def test_commands_that_need_an_extra_say_which_in_one_line(tmp_path):
    serve = _core_harness("serve", "--port", "0", cwd=tmp_path)
    assert serve.returncode == 2
    assert ("harness serve: error: the reference service needs the 'service' extra (" in serve.stderr
            and "pip install 'gpu-inference-harness[service]'" in serve.stderr)

    load = _core_harness("load", "--duration-s", "1", "--out", str(tmp_path / "load"), "--no-prober", cwd=tmp_path)
    assert load.returncode == 2
    assert "harness load: error: deploying the reference service needs the 'service' extra" in load.stderr
    assert "Traceback" not in load.stderr


# ----- the pytest plugin's entry point -----------------------------------------------------------------------

def test_the_plugin_is_registered_under_its_module_name():
    registered = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert registered.get("harness.pytest_plugin") == "harness.pytest_plugin", (
        "no pytest11 entry point: reinstall the package (pip install -e .) after changing pyproject.toml")


def _pytest(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=180, env={**clean, **(env or {})})


def test_the_plugin_loads_outside_this_repository(tmp_path):
    (tmp_path / "test_tiny.py").write_text("def test_options(harness_options):\n"
                                           "    assert harness_options.preset == 'nightly'\n")
    help_text = _pytest("--help", cwd=tmp_path).stdout
    assert "chaos and performance harness" in help_text and "--harness-profile" in help_text
    run = _pytest("-q", "--harness-profile", "nightly", "test_tiny.py", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_conftest_or_p_loading_it_too_registers_it_once(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_plugin"]\n')
    (tmp_path / "test_tiny.py").write_text("def test_options(harness_options):\n    pass\n")
    for extra in ((), ("-p", "harness.pytest_plugin")):
        run = _pytest("-q", *extra, "test_tiny.py", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
    # with autoloading off, the conftest alone loads it
    assert _pytest("-q", "test_tiny.py", cwd=tmp_path, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}).returncode == 0
