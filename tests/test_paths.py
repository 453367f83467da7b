"""`harness.paths`: user-given paths resolved once at the entry point, as click's ``Path(resolve_path=True)``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import harness.paths
from harness.cli import build_parser, main
from harness.errors import EXIT_USAGE, ConfigError
from harness.paths import path_type, resolve_path

# flags (by dest) that name a file or directory; every one of them must be resolved by harness.paths
PATH_DESTS = {"out", "spec", "baseline", "state_file", "workdir", "weights_dir", "experiments", "run_dir"}
# read in-process only, by modules other engineers own this round (harness/cli/compare.py, harness/service/)
NOT_YET_RESOLVED = {("compare", "run_dir"), ("compare", "baseline"), ("serve", "weights_dir")}


def test_the_public_surface_is_the_two_functions():
    assert sorted(harness.paths.__all__) == ["path_type", "resolve_path"]
    assert all(hasattr(harness.paths, name) for name in harness.paths.__all__)


def test_a_relative_path_is_made_absolute_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = resolve_path("rel/dir")
    assert resolved.is_absolute() and resolved == tmp_path.resolve() / "rel" / "dir"
    assert resolve_path(Path("rel/../other")) == tmp_path.resolve() / "other"  # normalised
    assert resolve_path(".") == tmp_path.resolve()


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_path("~/reports/x") == (tmp_path / "home").resolve() / "reports" / "x"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_path_is_a_config_error_naming_the_flag(value):
    with pytest.raises(ConfigError) as exc:
        resolve_path(value, "--out")
    assert exc.value.exit_code == EXIT_USAGE
    assert str(exc.value).startswith(f"--out={value!r}: ")
    with pytest.raises(ConfigError, match="^--spec='': "):
        path_type("--spec")("")


def test_an_unresolvable_path_is_a_config_error_too():
    with pytest.raises(ConfigError, match="^out_dir='a\\\\x00b': cannot be resolved"):
        resolve_path("a\x00b", "out_dir")


def test_the_cli_refuses_an_empty_out_with_exit_2_naming_the_flag(capsys):
    assert main(["load", "--duration-s", "1", "--out", ""]) == 2
    assert "--out='': " in capsys.readouterr().err


def test_the_cli_hands_absolute_paths_down(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["chaos", "run", "pod-kill", "--out", "rel/dir", "--spec", "~/spec.yaml"])
    assert args.out == tmp_path.resolve() / "rel" / "dir"
    assert args.spec == Path("~/spec.yaml").expanduser().resolve()


def _path_actions(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _path_actions(sub, prefix + (name,))
        elif action.dest in PATH_DESTS:
            yield prefix, action


def test_every_path_flag_of_the_cli_is_resolved_by_harness_paths():
    found = list(_path_actions(build_parser()))
    assert len(found) >= 15  # the walk reached the subcommands
    unresolved = [(" ".join(prefix), action.dest) for prefix, action in found
                  if getattr(action.type, "__qualname__", "") != "path_type.<locals>.convert"
                  and (prefix[0], action.dest) not in NOT_YET_RESOLVED]
    assert unresolved == []
