"""Environment fingerprint: contents, speed, absent GPU/torch, git and cgroup detection, differences."""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from pathlib import Path

import pynvml
import pytest

from harness import environment
from harness.environment import (
    cgroup_info, fingerprint, fingerprint_differences, flatten_fingerprint, git_info, torch_info,
)
from harness.gpu import FakeNvml, GpuError, NvmlSession, query_gpus


def _patch_nvml(monkeypatch, fake: FakeNvml) -> None:
    for name, fn in fake.functions().items():
        monkeypatch.setattr(pynvml, name, fn)


@pytest.fixture
def fresh_caches():
    """torch_info and git_info are cached per process; tests that fake them must not leak."""
    torch_info.cache_clear()
    git_info.cache_clear()
    try:
        yield
    finally:
        torch_info.cache_clear()
        git_info.cache_clear()


def test_fingerprint_has_the_fields_a_report_needs():
    fp = fingerprint()
    json.dumps(fp, allow_nan=False)  # JSON-ready as is
    assert fp["cpu"]["logical_cores"] >= 1 and fp["cpu"]["model"]
    assert fp["cpu"]["available_cores"] <= fp["cpu"]["logical_cores"]
    assert fp["memory"]["total_mb"] > 100
    assert fp["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert fp["torch"]["version"] not in ("", None)
    assert "cuda_runtime" in fp["torch"] and "cudnn" in fp["torch"]
    assert fp["harness"]["version"]
    assert fp["cgroup"]["version"] in ("v1", "v2", "none")
    assert fp["gpu"]["present"] == query_gpus().present


def test_fast_without_torch_import():
    fingerprint(inspect_torch=False)  # warm the per-process caches (cpuinfo, git)
    started = time.perf_counter()
    fp = fingerprint(inspect_torch=False)
    assert time.perf_counter() - started < 1.0
    assert fp["torch"]["version"]  # from package metadata, without importing torch


def test_torch_details_are_cached():
    assert torch_info() is torch_info()


def test_absent_gpu_is_reported_with_reason_never_zeros(monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    gpu = fingerprint(inspect_torch=False)["gpu"]
    assert gpu == {"present": False, "reason": "the NVIDIA driver is installed but not loaded"}


def test_real_machine_gpu_state():
    gpu = fingerprint(inspect_torch=False)["gpu"]
    if gpu["present"]:
        assert gpu["count"] == len(gpu["devices"]) >= 1
    else:
        assert set(gpu) == {"present", "reason"} and gpu["reason"]


def test_present_gpu_through_nvml(monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml([
        {"name": "NVIDIA H100 80GB HBM3", "memory_total_mb": 81559},
        {"name": "NVIDIA H100 80GB HBM3", "memory_total_mb": 81559},
    ], driver_version="550.90.07", cuda_driver_version=12040))
    gpu = fingerprint(inspect_torch=False)["gpu"]
    assert gpu["present"] is True and gpu["count"] == 2
    assert gpu["driver_version"] == "550.90.07" and gpu["cuda_driver_version"] == "12.4"
    assert gpu["devices"][1] == {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-fake-1",
                                 "memory_total_mb": 81559.0}


def test_failing_gpu_query_is_recorded_not_raised(monkeypatch):
    fake = FakeNvml([{"name": "NVIDIA A100", "memory_total_mb": 40960}])
    _patch_nvml(monkeypatch, fake)

    def lost(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lost)
    with pytest.raises(GpuError, match="nvmlDeviceGetMemoryInfo"):
        query_gpus()
    gpu = fingerprint(inspect_torch=False)["gpu"]
    assert gpu["present"] is False and "GPU is lost" in gpu["reason"]
    assert fake.initialised == 0  # sessions are shut down even when a query fails


def test_no_gpus_listed_is_absent(monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml([]))
    with NvmlSession() as session:
        assert not session.present and "reports no GPU" in session.reason


def test_torch_absent(monkeypatch, fresh_caches):
    monkeypatch.setitem(sys.modules, "torch", None)
    fp = fingerprint()
    assert fp["torch"]["version"] == "absent" and fp["torch"]["reason"]


def test_git_commit_of_this_checkout():
    info = git_info()
    root = Path(environment.__file__).resolve().parent.parent
    if (root / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"]) and isinstance(info["git_dirty"], bool)


def test_not_a_checkout_gives_null_commit(monkeypatch, tmp_path: Path, fresh_caches):
    monkeypatch.setattr(environment, "_package_root", lambda: tmp_path)
    assert git_info() == {"git_commit": None, "git_dirty": None}


def test_cgroup_detection_on_constructed_trees(tmp_path: Path):
    assert cgroup_info(tmp_path / "missing") == {"version": "none", "memory_writable": False, "cpu_writable": False}
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    assert cgroup_info(v1) == {"version": "v1", "memory_writable": True, "cpu_writable": False}
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io pids\n")
    assert cgroup_info(v2) == {"version": "v2", "memory_writable": False, "cpu_writable": True}


def test_flatten():
    assert flatten_fingerprint({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def _base() -> dict:
    return {
        "cpu": {"model": "Intel Xeon", "logical_cores": 2, "physical_cores": 2, "available_cores": 2,
                "precision_flags": ["avx2", "avx512_bf16"]},
        "memory": {"total_mb": 24105.1},
        "python": {"version": "3.11.7"},
        "torch": {"version": "2.13.0+cpu", "cuda_runtime": None, "cudnn": None, "num_threads": 2,
                  "float32_matmul_precision": "highest"},
        "gpu": {"present": True, "count": 1, "driver_version": "550.54.15", "cuda_driver_version": "12.4",
                "devices": [{"index": 0, "name": "NVIDIA A10", "uuid": "GPU-1", "memory_total_mb": 23028.0}]},
        "harness": {"version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False},
        "os": {"hostname": "box-1", "kernel": "6.1"},
        "collected_s": 1.0,
    }


def test_identical_environments_have_no_differences():
    a = _base()
    b = copy.deepcopy(a)
    b["harness"]["git_commit"] = "b" * 40  # comparing two builds is the point
    b["os"]["hostname"] = "box-2"
    b["collected_s"] = 2.0
    b["memory"]["total_mb"] = 24101.0  # kernel reservations wobble
    b["python"]["version"] = "3.11.9"
    b["gpu"]["devices"][0]["uuid"] = "GPU-2"  # another board of the same model
    assert fingerprint_differences(a, b) == []
    assert fingerprint_differences(fingerprint(inspect_torch=False), fingerprint(inspect_torch=False)) == []


def test_performance_relevant_differences_are_named():
    a, b = _base(), _base()
    b["cpu"]["model"] = "AMD EPYC"
    b["cpu"]["available_cores"] = 1
    b["torch"]["version"] = "2.12.0+cpu"
    b["torch"]["float32_matmul_precision"] = "high"
    b["gpu"]["devices"][0]["name"] = "NVIDIA L4"
    diffs = fingerprint_differences(a, b)
    assert [d.split(":")[0] for d in diffs] == [
        "cpu.model", "cpu.available_cores", "torch.version", "torch.float32_matmul_precision", "gpu.devices"]
    assert "'Intel Xeon' -> 'AMD EPYC'" in diffs[0] and "NVIDIA L4" in diffs[-1]


def test_gpu_versus_no_gpu_and_missing_fields():
    a, b = _base(), _base()
    b["gpu"] = {"present": False, "reason": "no driver"}
    names = [d.split(":")[0] for d in fingerprint_differences(a, b)]
    assert names[0] == "gpu.present" and "gpu.devices" in names
    assert fingerprint_differences({}, {}) == []
    assert fingerprint_differences(None, _base())  # a run without a fingerprint is not comparable


def test_uninspected_torch_compares_version_only():
    a, b = _base(), _base()
    b["torch"] = {"version": "2.13.0+cpu", "inspected": False}
    assert fingerprint_differences(a, b) == []
    b["torch"]["version"] = "2.14.0+cpu"
    assert [d.split(":")[0] for d in fingerprint_differences(a, b)] == ["torch.version"]
