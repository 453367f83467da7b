"""`harness chaos run` against a team's own server (a command target in the --spec file): a fault that needs
the reference service's hooks is skipped, saying why. (Pod-kill on a command target gives TTR, both outages
and the verdict: tests/test_job.py runs it through the main job, tests/chaos/test_third_party_servers.py on
three real servers.)"""

from __future__ import annotations

import json

import pytest

from harness.cli import main

from ..platforms.local.toy_server import spec_yaml, write_server
from .helpers import ROOT


@pytest.fixture
def toy_spec(tmp_path, monkeypatch):
    """The toy server as a command target, in a spec file of tmp_path (the cwd), workdir relative to it."""
    write_server(tmp_path / "server")
    (tmp_path / "toy.yaml").write_text(spec_yaml())
    monkeypatch.chdir(tmp_path)
    return "toy.yaml"


def test_a_fault_needing_the_service_hooks_is_skipped_on_a_command_target_saying_why(toy_spec, tmp_path, capsys):
    code = main(["chaos", "run", str(ROOT / "experiments" / "hang.json"), "--spec", toy_spec, "--out", "runs/hang"])
    out = capsys.readouterr().out
    assert code == 0
    assert "hang x single: skipped (skipped on a command target: inject_fault needs the reference service's " \
           "fault hooks, which a command target does not have)" in out
    assert json.loads((tmp_path / "runs" / "hang" / "result.json").read_text())["outcome"] == "skipped"


def test_a_process_fault_is_skipped_on_an_endpoint_target_saying_why(tmp_path, monkeypatch, capsys):
    (tmp_path / "theirs.yaml").write_text("target:\n  endpoint: http://127.0.0.1:9\n")
    monkeypatch.chdir(tmp_path)
    code = main(["chaos", "run", str(ROOT / "experiments" / "pod-kill.json"), "--spec", "theirs.yaml", "--out", "runs/kill"])
    assert code == 0
    assert ("skipped on an endpoint target: kill_replica acts on a replica's process, and the harness runs no "
            "process of an endpoint target") in capsys.readouterr().out
    assert not (tmp_path / "runs" / "kill" / "deployment").exists()  # nothing was deployed


def test_endpoint_on_the_local_platform_is_the_specs_endpoint_target(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["chaos", "run", str(ROOT / "experiments" / "freeze.json"), "--endpoint", "http://127.0.0.1:9",
                 "--out", "runs/freeze"])
    assert code == 0
    assert "freeze x single: skipped (skipped on an endpoint target: freeze_replica acts" in capsys.readouterr().out
    result = json.loads((tmp_path / "runs" / "freeze" / "result.json").read_text())
    assert result["spec"]["target"]["endpoint"] == "http://127.0.0.1:9"
    # the main job takes one as its endpoint target too: a bad one is refused naming the flag, before anything runs
    assert main(["run", "tiny", "--endpoint", "https://127.0.0.1:9", "--out", "runs/job"]) == 2
    assert "--endpoint='https://127.0.0.1:9': must be an http:// URL" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "job").exists()
