"""``--out`` has one home (`harness.cli._options`): every command that writes a run declares it with
`add_out`, it is made absolute against the directory the user stood in, and it is checked once by the
dispatcher before the command runs.

Each command runs through `harness.cli.main` with its function replaced by a spy, so nothing is
deployed: the spy sees the arguments the command would have seen.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

# command -> (argv before --out, with the command's other required arguments; the module and function it runs)
COMMANDS = {
    "capacity": (["capacity", "--target-rps", "10", "--p99-ms", "500"], "harness.cli.capacity", "run_capacity_command"),
    "render": (["render"], "harness.cli.render", "run"),
    "run": (["run", "smoke"], "harness.cli.run", "run_command"),
    "sweep": (["sweep"], "harness.cli.sweep", "run_sweep_command"),
    "load": (["load", "--duration-s", "1"], "harness.cli.load", "run"),
    "chaos run": (["chaos", "run", "pod-kill"], "harness.cli.chaos", "_run"),
    "chaos matrix": (["chaos", "matrix"], "harness.cli.chaos", "_matrix"),
    "bench stall": (["bench", "stall"], "harness.cli.bench", "run_stall"),
    "bench fuzz": (["bench", "fuzz"], "harness.cli.bench", "run_fuzz"),
    "bench netfault": (["bench", "netfault"], "harness.cli.bench", "run_netfault"),
    "bench loadgen": (["bench", "loadgen"], "harness.cli.bench", "run_loadgen"),
    "bench ab": (["bench", "ab"], "harness.cli._bench_compare", "run_ab_command"),
    "bench compare": (["bench", "compare"], "harness.cli._bench_compare", "run_compare_command"),
}


@pytest.fixture
def spy(monkeypatch):
    """Replace each command's function with one that records the arguments it is called with."""
    seen: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    for _, module, name in COMMANDS.values():
        monkeypatch.setattr(f"{module}.{name}", record)
    return seen


def _commands_with_out(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands_with_out(sub, prefix + (name,))
        elif "--out" in action.option_strings:
            yield " ".join(prefix), action


def test_every_command_with_out_is_covered_here_and_declares_it_alike():
    found = dict(_commands_with_out(build_parser()))
    assert set(found) == set(COMMANDS), "a command gained or lost --out: add it to COMMANDS (declared with add_out)"
    for command, action in found.items():
        assert action.dest == "out" and action.metavar == "DIR", command
        assert action.type.__qualname__ == "path_type.<locals>.convert", command
        assert action.help, command


def test_no_command_declares_or_checks_out_itself():
    for module in sorted((ROOT / "harness" / "cli").glob("*.py")):
        if module.name == "_options.py":
            continue
        text = module.read_text(encoding="utf-8")
        assert '"--out"' not in text, f"{module.name} declares --out itself: use harness.cli._options.add_out"
        assert not re.search(r"validate_output_dir\((args\.)?out\b", text), f"{module.name} checks --out itself"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_relative_out_reaches_the_command_absolute_under_the_current_directory(tmp_path, monkeypatch, spy, command):
    monkeypatch.chdir(tmp_path)
    argv, _, _ = COMMANDS[command]
    assert main([*argv, "--out", "runs/today"]) == 0
    (args,) = spy
    assert args.out == tmp_path.resolve() / "runs" / "today"
    assert isinstance(args.out, Path) and args.out.is_absolute()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_is_one_line_naming_out_and_the_value_exit_2(tmp_path, monkeypatch, capsys, spy, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a plain file\n")
    argv, _, _ = COMMANDS[command]
    assert main([*argv, "--out", "afile"]) == 2
    assert spy == [], "the command ran with an --out it cannot write"
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"harness {argv[0]}: error: --out='{tmp_path.resolve() / 'afile'}': "), line
    assert line.endswith("exists and is not a directory"), line


@pytest.mark.parametrize("command, expected", [
    ("render", "k8s"),
    ("bench fuzz", "reports/bench-fuzz"),
    ("bench stall", r"reports/bench-stall-\d{8}T\d{6}Z"),
    ("bench netfault", r"reports/bench-netfault-\d{8}T\d{6}Z"),
    ("bench loadgen", r"reports/bench-loadgen-\d{8}T\d{6}Z"),
    ("run", None),  # the job names reports/<run-id> itself
])
def test_a_default_out_is_absolute_under_the_current_directory_too(tmp_path, monkeypatch, spy, command, expected):
    monkeypatch.chdir(tmp_path)
    argv, _, _ = COMMANDS[command]
    assert main(argv) == 0
    (args,) = spy
    if expected is None:
        assert args.out is None
    else:
        assert args.out.is_absolute() and re.fullmatch(expected, str(args.out.relative_to(tmp_path.resolve())))


def test_a_default_out_that_is_a_file_is_refused_as_well(tmp_path, monkeypatch, capsys, spy):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k8s").write_text("not a directory\n")
    assert main(["render"]) == 2 and spy == []
    assert f"--out='{tmp_path.resolve() / 'k8s'}': exists and is not a directory" in capsys.readouterr().err


def test_the_terminal_shows_one_line_and_no_traceback(tmp_path):
    (tmp_path / "afile").write_text("a plain file\n")
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "ab", "--out", "afile"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"harness bench: error: --out='{tmp_path.resolve() / 'afile'}': exists and is not a directory"]

