"""The chaoslib runner: validation names the field, rollbacks always run, interrupts are recorded."""

from __future__ import annotations

import json
import textwrap

import pytest

from harness.chaos.toolkit import journal_interrupted, load_experiment_file, run_experiment, validate_experiment
from harness.errors import ConfigError

MODULE = textwrap.dedent(
    """
    import json, os

    def record(path, what):
        with open(path, "a") as f:
            f.write(what + "\\n")
        return what

    def fail(path):
        record(path, "fail")
        raise RuntimeError("the action broke")

    def interrupt(path):
        record(path, "interrupt")
        raise KeyboardInterrupt

    def healthy():
        return True
    """
)


@pytest.fixture()
def activities(tmp_path, monkeypatch):
    (tmp_path / "ctk_fake_activities.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "trace.txt"


def _activity(kind, name, func, **arguments):
    return {"type": kind, "name": name, "provider": {"type": "python", "module": "ctk_fake_activities", "func": func, "arguments": arguments}}


def _experiment(trace, method):
    return {
        "title": "t", "description": "d",
        "configuration": {"trace": {"type": "env", "key": "CTK_TRACE", "default": str(trace)}},
        "steady-state-hypothesis": {"title": "h", "probes": [{**_activity("probe", "ok", "healthy"), "tolerance": True}]},
        "method": method,
        "rollbacks": [_activity("action", "undo", "record", path="${trace}", what="rollback")],
    }


def test_rollbacks_run_after_a_failed_action_and_the_journal_is_written(activities, tmp_path):
    experiment = _experiment(activities, [_activity("action", "break", "fail", path="${trace}")])
    validate_experiment(experiment)
    journal = run_experiment(experiment, journal_path=tmp_path / "journal.json")
    assert activities.read_text().split() == ["fail", "rollback"]
    assert journal["run"][0]["status"] == "failed" and "the action broke" in journal["run"][0]["exception"][-1]
    saved = json.loads((tmp_path / "journal.json").read_text())
    assert [r["activity"]["name"] for r in saved["rollbacks"]] == ["undo"]
    assert not journal_interrupted(journal)


def test_an_interrupt_ends_the_method_runs_rollbacks_and_marks_the_journal(activities, tmp_path):
    method = [_activity("action", "stop", "interrupt", path="${trace}"), _activity("action", "never", "record", path="${trace}", what="after")]
    journal = run_experiment(_experiment(activities, method), journal_path=tmp_path / "journal.json")
    assert activities.read_text().split() == ["interrupt", "rollback"]
    assert journal_interrupted(journal)
    assert json.loads((tmp_path / "journal.json").read_text())["status"] == "interrupted"


def test_env_is_set_for_the_run_and_restored(activities, tmp_path, monkeypatch):
    monkeypatch.delenv("CTK_TRACE", raising=False)
    other = tmp_path / "other.txt"
    method = [_activity("action", "mark", "record", path="${trace}", what="ran")]
    run_experiment(_experiment(activities, method), env={"CTK_TRACE": str(other)})
    assert other.read_text().split() == ["ran", "rollback"]
    import os

    assert "CTK_TRACE" not in os.environ


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda e: e.pop("title"), "title"),
        (lambda e: e["method"].append({"type": "action", "name": "x"}), "method[1]"),
        (lambda e: e["method"].append(_activity("action", "x", "no_such_function")), "method[1]"),
        (lambda e: e["rollbacks"].append({"type": "dance", "name": "y", "provider": {"type": "python"}}), "rollbacks[1]"),
        (lambda e: e["steady-state-hypothesis"]["probes"][0].pop("tolerance"), "steady-state-hypothesis.probes"),
    ],
)
def test_invalid_experiments_name_the_field(activities, edit, field):
    experiment = _experiment(activities, [_activity("action", "mark", "record", path="x", what="y")])
    edit(experiment)
    with pytest.raises(ConfigError) as info:
        validate_experiment(experiment)
    assert info.value.field == field
    assert info.value.exit_code == 2


def test_unreadable_experiment_files_are_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON at line 1, column 2"):
        load_experiment_file(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_experiment_file(tmp_path / "missing.json")
