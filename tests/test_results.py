"""Run records: ids, save/load round trip, and every way a run directory can be bad."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import results
from harness.errors import HarnessError
from harness.jsonfile import write_json
from harness.results import (
    RUN_FILE,
    SCHEMA_VERSION,
    RunRecord,
    RunRecordError,
    list_runs,
    load_run,
    new_run_id,
    new_part_record,
    new_run_record,
    save_run,
)


def test_public_surface_is_explicit():
    assert set(results.__all__) <= set(dir(results))
    assert "RunRecord" in results.__all__ and "write_json" not in results.__all__  # harness.jsonfile's


def test_run_ids_sort_by_creation_time_and_are_unique():
    ids = [new_run_id(1_700_000_000.0 + i * 0.001) for i in range(50)]
    assert ids == sorted(ids)
    assert len({i.split("-")[0] for i in ids}) == 50  # millisecond resolution
    assert len(set(new_run_id(1_700_000_000.0) for _ in range(100))) == 100
    assert new_run_id(1_700_000_000.25).startswith("20231114T221320250Z-")


def test_save_and_load_round_trip(tmp_path: Path):
    record = RunRecord(kind="chaos", command=["harness", "run", "smoke"], platform="local", topology="single",
                       preset="smoke", config={"replicas": 1}, environment={"cpu": {"model": "x"}},
                       summary={"p99_ms": 12.5})
    record.add_artifact("timeline", "timeline.csv")
    record.add_artifact("events", tmp_path / "chaos" / "events.jsonl", run_dir=tmp_path)
    record.finish("completed")
    path = save_run(tmp_path, record)

    assert path == tmp_path / RUN_FILE
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["artifacts"] == {"timeline": "timeline.csv", "events": "chaos/events.jsonl"}
    loaded = load_run(tmp_path)
    assert loaded == record
    assert loaded.artifact_path(tmp_path, "events") == tmp_path / "chaos" / "events.jsonl"
    assert loaded.finished_s is not None and loaded.status == "completed"


def test_new_run_record_carries_command_and_environment():
    record = new_run_record("load", command=["harness", "load"], inspect_torch=False, topology="single")
    assert record.status == "running"
    assert record.command == ["harness", "load"]
    assert record.environment["harness"]["version"] == record.harness_version
    assert "gpu" in record.environment and "cpu" in record.environment


def test_a_part_has_its_parents_preset_and_a_profile_only_of_its_own_load():
    parent = RunRecord(kind="run", command=["harness", "run", "smoke"], preset="smoke", platform="local")
    load = new_part_record(parent, "load", "load", profile="steady")
    sweep = new_part_record(parent, "sweep", "sweep")
    assert (load.preset, load.profile) == ("smoke", "steady")
    assert (sweep.preset, sweep.profile) == ("smoke", None)  # the parent's preset is no load profile


def test_a_record_written_before_1_1_still_loads(tmp_path: Path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"schema_version": "1.0", "kind": "run", "profile": "smoke"}))
    record = load_run(tmp_path)
    assert record.profile == "smoke" and record.preset is None and SCHEMA_VERSION == "1.1"

def test_new_run_record_rejects_bad_field_naming_it():
    with pytest.raises(RunRecordError, match="kind"):
        new_run_record("picnic", command=[], inspect_torch=False)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.csv", "a/../../b"])
def test_artifact_paths_must_stay_inside_the_run(bad: str):
    record = RunRecord(kind="run")
    with pytest.raises(ValueError, match="relative|absolute"):
        record.add_artifact("x", bad)
    with pytest.raises(ValueError):
        RunRecord(kind="run", artifacts={"x": bad})


def test_unknown_artifact_is_a_clear_error(tmp_path: Path):
    record = RunRecord(kind="run", artifacts={"requests": "requests.csv"})
    with pytest.raises(RunRecordError, match="no artifact 'timeline'.*requests"):
        record.artifact_path(tmp_path, "timeline")


def test_finish_refuses_running():
    with pytest.raises(ValueError, match="running"):
        RunRecord(kind="run").finish("running")


def test_missing_run_json_names_the_file(tmp_path: Path):
    with pytest.raises(HarnessError, match=f"{tmp_path / RUN_FILE}.*not found"):
        load_run(tmp_path)


def test_corrupt_run_json_names_the_file_and_position(tmp_path: Path):
    (tmp_path / RUN_FILE).write_text('{"schema_version": "1.0", "kind": ')
    with pytest.raises(RunRecordError, match=rf"{RUN_FILE}: not valid JSON \(line 1"):
        load_run(tmp_path)


def test_truncated_file_is_not_a_json_object(tmp_path: Path):
    (tmp_path / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(RunRecordError, match="expected a JSON object"):
        load_run(tmp_path)


def test_newer_major_schema_is_refused_with_upgrade_hint(tmp_path: Path):
    data = RunRecord(kind="run").model_dump(mode="json")
    data["schema_version"] = "2.0"
    write_json(tmp_path / RUN_FILE, data)
    with pytest.raises(RunRecordError, match="newer harness.*schema 1.x"):
        load_run(tmp_path)


def test_newer_minor_schema_with_unknown_fields_still_loads(tmp_path: Path):
    data = RunRecord(kind="sweep").model_dump(mode="json")
    data["schema_version"] = "1.7"
    data["added_later"] = {"x": 1}
    write_json(tmp_path / RUN_FILE, data)
    assert load_run(tmp_path).kind == "sweep"


def test_invalid_field_value_names_the_field(tmp_path: Path):
    data = RunRecord(kind="run").model_dump(mode="json")
    data["status"] = "exploded"
    write_json(tmp_path / RUN_FILE, data)
    with pytest.raises(RunRecordError, match="status.*exploded"):
        load_run(tmp_path)


def test_missing_schema_version_is_not_a_run_record(tmp_path: Path):
    write_json(tmp_path / RUN_FILE, {"kind": "run"})
    with pytest.raises(RunRecordError, match="no schema_version"):
        load_run(tmp_path)


def test_list_runs_returns_run_directories_in_id_order(tmp_path: Path):
    for created in (3.0, 1.0, 2.0):
        record = RunRecord(kind="run", run_id=new_run_id(1_700_000_000 + created))
        save_run(tmp_path / record.run_id, record)
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert len(runs) == 3 and runs == sorted(runs)
    assert [load_run(r).run_id for r in runs] == sorted(load_run(r).run_id for r in runs)
    assert list_runs(tmp_path / "missing") == []


def test_created_s_defaults_to_now():
    before = time.time()
    record = RunRecord(kind="capacity")
    assert before <= record.created_s <= time.time()
