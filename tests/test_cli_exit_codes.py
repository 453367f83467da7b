"""Every command's --help ends with its exit codes, from the one table in `harness.cli._exit_codes`."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from harness.cli import build_parser, main
from harness.cli._exit_codes import COMMAND_EXIT_CODES, MEANINGS, exit_codes_help


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {prefix.strip(): parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, f"{prefix}{name} "))
    return found


COMMANDS = _commands(build_parser())


def test_every_registered_command_has_its_exit_codes_and_the_table_no_stale_entry():
    assert set(COMMANDS) == set(COMMAND_EXIT_CODES)
    for command, codes in COMMAND_EXIT_CODES.items():
        assert set(codes) <= set(MEANINGS), command
        assert 0 in codes and 2 in codes, f"{command}: every command can succeed and be misused"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_ends_with_the_commands_exit_codes(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"])
    assert exited.value.code == 0
    text = out.getvalue()
    block = exit_codes_help(command)
    assert text.rstrip().endswith(block.rstrip()), text[-600:]
    assert text.count("exit codes:") == 1, "exit codes are described in one place (harness.cli._exit_codes)"
    for code in COMMAND_EXIT_CODES[command]:
        assert f"\n  {code:<5}" in block


def test_a_command_without_its_own_wording_gets_the_shared_meaning():
    block = exit_codes_help("load", width=200)
    assert f"  2    {MEANINGS[2]}" in block and f"  130  {MEANINGS[130]}" in block and "\n  1 " not in block
    assert "the tier was not met" in exit_codes_help("chaos run", width=200)
