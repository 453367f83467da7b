"""Run records: the on-disk format every report and comparison is rebuilt from.

A run is a directory (``reports/<run-id>/`` by default) holding ``run.json`` and the artifacts it
names. Reports read these files only, never a live run, so the format is the contract:

``run.json`` (UTF-8 JSON object, written atomically by `save_run`)::

    schema_version   "MAJOR.MINOR"; readers accept their own major and refuse a newer one
    run_id           sortable: "20250101T120000123Z-a1b2c3" (UTC time to the ms, then 6 hex chars)
    kind             run | load | chaos | sweep | capacity | bench
    created_s        wall-clock epoch seconds when the run started; finished_s when it ended (or null)
    harness_version  the harness that wrote it
    command          the command line, as a list of arguments
    preset           smoke | nightly | tiny: the size of the run it belongs to (`harness run`, a sweep, a chaos
                     run, a scenario session; a part has its parent's) | null  (since 1.1)
    profile          the load profile (steady, ramp, step, spike, soak) of a load run | null (before 1.1, a
                     run's preset was here too)
    config           the resolved configuration (free-form JSON object: spec, load, SLA settings)
    platform         local | kubernetes | null
    topology         single | active-standby | multi-active | null
    environment      the fingerprint of `harness.environment.fingerprint`
    artifacts        {name: path relative to the run directory}, e.g. {"requests": "requests.csv"}
    parts            {name: relative directory of a nested run with its own run.json}
    status           running | completed | failed | aborted; reason: why, for anything but completed
    summary          small free-form JSON object of headline results (the full ones live in artifacts)

Standard artifact names and files (`ARTIFACT_FILES`): requests -> requests.csv (per-request
records), timeline -> timeline.csv (prober), events -> events.jsonl (platform events), telemetry ->
telemetry.csv, journal -> journal.json (Chaos Toolkit), sweep -> sweep.csv, result -> result.json,
summary -> summary.json, report_html -> report.html, report_md -> report.md.

run.json is written through `harness.jsonfile.write_json` (strict JSON: NaN and infinities become
``null``, atomic replacement); its readers raise `RunRecordError` (`harness.errors`) naming the
file. Within a major version, fields are only added; readers ignore fields they do not know.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness import __version__
from harness.errors import RunRecordError
from harness.jsonfile import read_json, write_json

__all__ = [
    "SCHEMA_VERSION",
    "RUN_FILE",
    "ARTIFACT_FILES",
    "RUN_KINDS",
    "RUN_STATUSES",
    "RunRecordError",
    "RunRecord",
    "new_run_id",
    "new_run_record",
    "new_part_record",
    "save_run",
    "load_run",
    "list_runs",
]

SCHEMA_VERSION = "1.1"
RUN_FILE = "run.json"
ARTIFACT_FILES: dict[str, str] = {
    "requests": "requests.csv",
    "timeline": "timeline.csv",
    "events": "events.jsonl",
    "telemetry": "telemetry.csv",
    "journal": "journal.json",
    "sweep": "sweep.csv",
    "result": "result.json",
    "summary": "summary.json",
    "report_html": "report.html",
    "report_md": "report.md",
}
RUN_KINDS = ("run", "load", "chaos", "sweep", "capacity", "bench")
RUN_STATUSES = ("running", "completed", "failed", "aborted")

RunKind = Literal["run", "load", "chaos", "sweep", "capacity", "bench"]
RunStatus = Literal["running", "completed", "failed", "aborted"]


def new_run_id(now_s: float | None = None) -> str:
    """Return a new run id that sorts by creation time: "YYYYmmddTHHMMSSmmmZ-xxxxxx"."""
    now_s = time.time() if now_s is None else now_s
    seconds, millis = divmod(int(round(now_s * 1000)), 1000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
    return f"{stamp}{millis:03d}Z-{secrets.token_hex(3)}"


def _relative_path(name: str, value: str) -> str:
    path = PurePosixPath(value.replace(os.sep, "/"))
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{name}={value!r}: must be a path relative to the run directory, without '..'")
    return str(path)


class RunRecord(BaseModel):
    """The contents of run.json (see the module docstring for each field)."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    schema_version: str = SCHEMA_VERSION
    run_id: str = Field(default_factory=new_run_id, min_length=1)
    kind: RunKind
    created_s: float = Field(default_factory=time.time)
    finished_s: float | None = None
    harness_version: str = __version__
    command: list[str] = Field(default_factory=list)
    preset: str | None = None
    profile: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    platform: str | None = None
    topology: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    parts: dict[str, str] = Field(default_factory=dict)
    status: RunStatus = "running"
    reason: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)

    @field_validator("artifacts", "parts")
    @classmethod
    def _relative(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _relative_path(name, path) for name, path in value.items()}

    def add_artifact(self, name: str, path: str | Path, run_dir: str | Path | None = None) -> None:
        """Record artifact ``name`` at ``path`` (relative, or absolute under ``run_dir``); ValueError otherwise."""
        path = Path(path)
        if path.is_absolute():
            if run_dir is None:
                raise ValueError(f"{name}={str(path)!r}: absolute artifact path needs run_dir")
            path = path.resolve().relative_to(Path(run_dir).resolve())
        self.artifacts = {**self.artifacts, name: _relative_path(name, path.as_posix())}

    def artifact_path(self, run_dir: str | Path, name: str) -> Path:
        """Return the absolute path of artifact ``name``; raise RunRecordError if it is not recorded."""
        if name not in self.artifacts:
            known = ", ".join(sorted(self.artifacts)) or "none"
            raise RunRecordError(f"run {self.run_id}: no artifact {name!r} (recorded: {known})")
        return Path(run_dir) / self.artifacts[name]

    def finish(self, status: RunStatus, reason: str | None = None) -> None:
        """Mark the run ended with ``status`` (completed/failed/aborted) and why; stamps finished_s."""
        if status == "running":
            raise ValueError("status='running': finish() takes completed, failed or aborted")
        self.status, self.reason, self.finished_s = status, reason, time.time()


def new_run_record(kind: RunKind, *, command: list[str] | None = None, inspect_torch: bool = True,
                   **fields: Any) -> RunRecord:
    """Return a running RunRecord of ``kind`` with a fresh id, the command line and the environment.

    Raises RunRecordError naming the field when a value is invalid.
    """
    from harness.environment import fingerprint  # runtime import: fingerprinting probes the machine

    try:
        return RunRecord(
            kind=kind,
            command=list(sys.argv if command is None else command),
            environment=fingerprint(inspect_torch=inspect_torch),
            **fields,
        )
    except ValidationError as exc:
        raise RunRecordError(f"invalid run record: {_first_error(exc)}") from exc


def new_part_record(parent: RunRecord, kind: RunKind, name: str, **fields: Any) -> RunRecord:
    """Return a running RunRecord for the part ``name`` of the run ``parent`` (the main job's load,
    sweep or capacity, a scenario session's): id ``<parent id>-<name>``, and the parent's command,
    preset, platform and environment (fingerprinted once per run); ``fields`` set or override the rest.

    Raises RunRecordError naming the field when a value is invalid.
    """
    values: dict[str, Any] = {"run_id": f"{parent.run_id}-{name}", "command": list(parent.command),
                              "preset": parent.preset, "platform": parent.platform,
                              "environment": parent.environment, **fields}
    try:
        return RunRecord(kind=kind, **values)
    except ValidationError as exc:
        raise RunRecordError(f"invalid run record: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "record"
    return f"{field}: {err.get('msg')} (got {err.get('input')!r})"


def save_run(run_dir: str | Path, record: RunRecord) -> Path:
    """Write ``run_dir``/run.json atomically (creating the directory); return its path."""
    return write_json(Path(run_dir) / RUN_FILE, record.model_dump(mode="json"))


def _schema_major(value: Any, path: Path) -> int:
    try:
        return int(str(value).split(".", 1)[0])
    except ValueError:
        raise RunRecordError(f"{path}: schema_version={value!r} is not 'MAJOR.MINOR'") from None


def load_run(run_dir: str | Path) -> RunRecord:
    """Return the RunRecord in ``run_dir``/run.json.

    Raises RunRecordError naming the file when it is missing, not JSON, invalid, or written by a
    harness with a newer schema major version.
    """
    path = Path(run_dir) / RUN_FILE
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunRecordError(f"{path}: expected a JSON object, found {type(data).__name__}")
    if "schema_version" not in data:
        raise RunRecordError(f"{path}: no schema_version; not a harness run record")
    theirs, ours = _schema_major(data["schema_version"], path), _schema_major(SCHEMA_VERSION, path)
    if theirs > ours:
        raise RunRecordError(
            f"{path}: schema_version={data['schema_version']!r} was written by a newer harness; "
            f"this harness ({__version__}) reads schema {ours}.x: upgrade the harness to read it"
        )
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        raise RunRecordError(f"{path}: invalid run record: {_first_error(exc)}") from exc


def list_runs(root: str | Path) -> list[Path]:
    """Return the run directories directly under ``root`` (those holding run.json), oldest id first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / RUN_FILE).is_file())
