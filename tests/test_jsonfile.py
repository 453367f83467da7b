"""Strict JSON files (`harness.jsonfile`): NaN written as null, common types converted, atomic replacement."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness import atomicfile
from harness.errors import RunRecordError
from harness.jsonfile import read_json, write_json
from harness.results import RunRecord


@dataclass
class _Point:
    x: float
    where: Path


def test_write_json_is_strict_and_converts_common_types(tmp_path: Path):
    path = write_json(tmp_path / "deep" / "out.json", {
        "nan": math.nan, "inf": -math.inf, "ok": 1.5, "np": np.float64(2.5), "arr": np.arange(3),
        "point": _Point(math.nan, Path("/x")), "set": {3, 1}, "tuple": (1, 2),
        "model": RunRecord(kind="bench", run_id="r1", created_s=1.0),
    })
    data = json.loads(path.read_text())  # json.loads would accept NaN; check the text too
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert data["nan"] is None and data["inf"] is None and data["ok"] == 1.5 and data["np"] == 2.5
    assert data["arr"] == [0, 1, 2] and data["point"] == {"x": None, "where": "/x"}
    assert data["set"] == [1, 3] and data["tuple"] == [1, 2] and data["model"]["run_id"] == "r1"


def test_write_json_refuses_unknown_types_and_leaves_nothing(tmp_path: Path):
    with pytest.raises(TypeError, match="object"):
        write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_write_json_replaces_atomically_leaving_no_temp_files(tmp_path: Path, monkeypatch):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomicfile.os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"v": 2})
    assert read_json(target) == {"v": 1}  # the old content survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_read_json_names_the_file_when_missing_or_corrupt(tmp_path: Path):
    with pytest.raises(RunRecordError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(RunRecordError, match=r"bad.json: not valid JSON \(line 1"):
        read_json(tmp_path / "bad.json")
