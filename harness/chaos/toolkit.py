"""The one place that calls into chaoslib: load, validate and run a Chaos Toolkit experiment.

Everything else in the harness goes through these functions, so chaoslib's exceptions are translated
here into harness errors (an invalid experiment is a `ConfigError` naming the field, exit 2) and the
run policy is fixed here: rollbacks always play, also when the hypothesis failed or the run was
interrupted (SIGINT/SIGTERM), and the journal is always written.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from harness.errors import ConfigError, HarnessError
from harness.userfiles import load_mapping

__all__ = [
    "ROLLBACK_STRATEGY",
    "JOURNAL_FILE",
    "LOG_FILE",
    "load_experiment_file",
    "validate_experiment",
    "run_experiment",
    "resolved_configuration",
    "write_journal",
    "journal_interrupted",
]

ROLLBACK_STRATEGY = "always"  # chaoslib's default skips rollbacks after a failure or an interrupt
JOURNAL_FILE = "journal.json"
LOG_FILE = "chaostoolkit.log"

_SECTIONS = ("method", "rollbacks")
_SYNTAX = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}  # by suffix, as chaoslib's loader decides


def load_experiment_file(path: str | Path) -> dict[str, Any]:
    """Return the experiment in a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file as a dict.

    Read by `harness.userfiles.load_mapping`, as chaoslib's loader would parse it but with every
    way the file can be wrong in one line; raises ConfigError naming ``experiment`` and the file.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError("experiment", str(file), "no such file" if not file.exists() else "not a file")
    if file.suffix not in _SYNTAX:
        raise ConfigError("experiment", str(file), "only .json, .yaml or .yml experiment files are supported")
    return load_mapping(file, "experiment", syntax=_SYNTAX[file.suffix], needs="a title, a description and a method")


def validate_experiment(experiment: Mapping[str, Any], *, source: str | None = None) -> None:
    """Validate ``experiment`` as `chaos validate` does; raise ConfigError naming the bad field.

    chaoslib raises one message for the whole file; to name the field, the activities are first
    checked one by one (``method[2]``, ``steady-state-hypothesis.probes[0]``, ``rollbacks[1]``),
    then the whole experiment is validated by chaoslib itself.
    """
    from chaoslib.activity import ensure_activity_is_valid
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    for field in ("title", "description"):
        if not experiment.get(field):
            raise ConfigError(field, experiment.get(field), "required by the experiment format", source=source)
    for field, activity in _activities(experiment):
        if not isinstance(activity, dict):
            raise ConfigError(field, activity, "an activity must be a mapping", source=source)
        try:
            ensure_activity_is_valid(activity)
        except ChaosException as exc:
            raise ConfigError(field, activity.get("name") or activity.get("ref"), str(exc), source=source) from exc
    with _quiet_chaoslib():
        try:
            ensure_experiment_is_valid(dict(experiment))
        except ChaosException as exc:
            raise ConfigError(_guess_field(str(exc)), experiment.get("title"), str(exc), source=source) from exc


def _activities(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for index, probe in enumerate(hypothesis.get("probes") or []):
        yield f"steady-state-hypothesis.probes[{index}]", probe
    for section in _SECTIONS:
        for index, activity in enumerate(experiment.get(section) or []):
            yield f"{section}[{index}]", activity


def _guess_field(message: str) -> str:
    lowered = message.lower()
    for word, field in (
        ("configuration", "configuration"),
        ("environment key", "configuration"),
        ("secret", "secrets"),
        ("tolerance", "steady-state-hypothesis.probes"),
        ("hypothesis", "steady-state-hypothesis"),
        ("method", "method"),
        ("extension", "extensions"),
        ("control", "controls"),
        ("tags", "tags"),
    ):
        if word in lowered:
            return field
    return "experiment"


@contextmanager
def _quiet_chaoslib() -> Iterator[None]:
    # chaoslib logs at INFO on the "chaostoolkit" logger; the harness prints its own progress
    logger = logging.getLogger("chaostoolkit")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update({key: str(value) for key, value in env.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _log_to(path: Path | None) -> Iterator[None]:
    logger = logging.getLogger("chaostoolkit")
    handler = None
    if path is not None:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(module)s] %(message)s"))
        logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG if handler else logging.WARNING)
    propagate = logger.propagate
    logger.propagate = False  # the journal and the log file hold chaoslib's account, not the console
    try:
        yield
    finally:
        logger.setLevel(previous)
        logger.propagate = propagate
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def run_experiment(
    experiment: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    journal_path: str | Path | None = None,
    log_path: str | Path | None = None,
    configuration: Mapping[str, Any] | None = None,
    after_method_only: bool = False,
) -> dict[str, Any]:
    """Run a validated experiment through chaoslib and return its journal (also written to ``journal_path``).

    ``env`` is set in this process's environment for the run (the experiments read
    ``HARNESS_STATE_FILE`` from it) and restored afterwards; ``configuration`` overrides
    configuration keys as `chaos run --var` does. Rollbacks always run. A SIGINT or SIGTERM during
    the run ends it with journal status ``"interrupted"`` (chaoslib swallows the signal; callers
    check `journal_interrupted`). With ``after_method_only`` the steady-state hypothesis is checked
    only after the method (`chaos run --hypothesis-strategy after-method-only`): for faults that are
    the start itself, where there is no steady state before. Raises ConfigError for an invalid experiment and HarnessError if
    chaoslib fails outside any activity.
    """
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import run_experiment as chaoslib_run
    from chaoslib.types import Strategy

    settings = {"runtime": {"rollbacks": {"strategy": ROLLBACK_STRATEGY}}}
    experiment_vars = (dict(configuration or {}), {})
    journal: dict[str, Any] | None = None
    with _environment(env or {}), _log_to(Path(log_path) if log_path else None):
        try:
            journal = chaoslib_run(
                dict(experiment), settings=settings, experiment_vars=experiment_vars,
                strategy=Strategy.AFTER_METHOD if after_method_only else Strategy.DEFAULT,
            )
        except ChaosException as exc:
            raise ConfigError(_guess_field(str(exc)), experiment.get("title"), str(exc)) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise HarnessError(f"chaoslib failed to run {experiment.get('title')!r}: {exc}") from exc
        finally:
            if journal is not None and journal_path is not None:
                write_journal(journal, journal_path)
    return journal


def resolved_configuration(experiment: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Return the experiment's configuration as chaoslib resolves it with ``env`` set (the values its
    ``${...}`` placeholders took in the run); {} when chaoslib cannot resolve it."""
    from chaoslib.configuration import load_configuration
    from chaoslib.exceptions import ChaosException

    with _environment(env):
        try:
            return dict(load_configuration(dict(experiment.get("configuration") or {})))
        except (ChaosException, KeyError, TypeError, ValueError):
            return {}


def write_journal(journal: Mapping[str, Any], path: str | Path) -> Path:
    """Write a Chaos Toolkit journal as JSON (non-JSON values as strings); return the path."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(journal, indent=2, default=str), encoding="utf-8")
    return file


def journal_interrupted(journal: Mapping[str, Any] | None) -> bool:
    """Return True when the journal records an interrupted or aborted run."""
    return bool(journal) and journal.get("status") in ("interrupted", "aborted")
