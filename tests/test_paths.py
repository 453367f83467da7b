"""`harness.paths`: user-given paths resolved once at the entry point, as click's ``Path(resolve_path=True)``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import harness.paths
from harness.cli import build_parser, main
from harness.errors import EXIT_USAGE, ConfigError
from harness.paths import path_type, resolve_path, validate_output_dir, validate_output_file

# flags (by dest) that name a file or directory; every one of them must be resolved by harness.paths
PATH_DESTS = {"out", "spec", "baseline", "state_file", "workdir", "weights_dir", "experiments", "run_dir"}
# read in-process only, by modules other engineers own this round (harness/cli/compare.py, harness/service/)
NOT_YET_RESOLVED = {("compare", "run_dir"), ("compare", "baseline"), ("serve", "weights_dir")}


def test_the_public_surface():
    assert sorted(harness.paths.__all__) == ["path_type", "resolve_path", "validate_output_dir", "validate_output_file"]
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


def test_an_output_directory_may_exist_or_be_created_below_a_writable_one(tmp_path):
    validate_output_dir(tmp_path, "--out")
    validate_output_dir(tmp_path / "new" / "deeper", "--out")
    validate_output_file(tmp_path / "state.json", "--state-file")
    (tmp_path / "state.json").write_text("{}")
    validate_output_file(tmp_path / "state.json", "--state-file")  # overwritten


@pytest.mark.parametrize("check, name, reason", [
    (validate_output_dir, "afile", "exists and is not a directory"),
    (validate_output_dir, "afile/out", "is under '{tmp}/afile', which is a file, not a directory"),
    (validate_output_dir, "afile/a/b", "is under '{tmp}/afile', which is a file, not a directory"),
    (validate_output_file, "adir", "is a directory; give the path of a file"),
    (validate_output_file, "afile/state.json", "is under '{tmp}/afile', which is a file, not a directory"),
])
def test_an_output_that_is_or_lies_under_the_wrong_kind_of_thing_is_refused(tmp_path, check, name, reason):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError) as info:
        check(tmp_path / name, "--out")
    assert info.value.exit_code == EXIT_USAGE
    assert str(info.value) == f"--out={str(tmp_path / name)!r}: {reason.format(tmp=tmp_path)}"


def test_an_output_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    # the decision is os.access's (mode bits, a read-only mount); root passes mode bits, so fake its answer
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(harness.paths.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(ConfigError, match="^--out='.*/locked': is not writable$"):
        validate_output_dir(locked, "--out")
    with pytest.raises(ConfigError, match="^--out='.*/locked/a/b': cannot be created: '.*/locked' is not writable$"):
        validate_output_dir(locked / "a" / "b", "--out")
    with pytest.raises(ConfigError, match="^--state-file='.*/locked/s.json': cannot be created: '.*/locked' is not"):
        validate_output_file(locked / "s.json", "--state-file")
