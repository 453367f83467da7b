"""Preflight checks: each check on constructed inputs, the GPU path through a fake NVML, and real runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from harness import preflight
from harness.cli import main
from harness.environment import cgroup_info, torch_info
from harness.errors import ConfigError, VerdictFailed
from harness.gpu import FakeNvml, GpuDevice, GpuInventory, query_gpus
from harness.preflight import (
    ABSENT, FAIL, PASS, WARN, Finding, PreflightOptions, check_cgroups, check_cuda_runtime, check_cudnn,
    check_disk, check_gpu_memory, check_nvidia_driver, check_ports, check_python, check_torch,
    findings_to_json, render_table, run_preflight, validate_preflight,
)

NO_GPU = GpuInventory(present=False, reason="no NVIDIA driver: the NVML library (libnvidia-ml.so.1) was not found")
CPU_TORCH = {"version": "2.13.0+cpu", "cuda_runtime": None, "cudnn": None, "cuda_available": False, "num_threads": 2}
CUDA_TORCH = {"version": "2.13.0+cu124", "cuda_runtime": "12.4", "cudnn": 90100, "cuda_available": True, "num_threads": 8}


def _gpu(*gib: float, cuda: str = "12.4") -> GpuInventory:
    devices = tuple(GpuDevice(i, f"NVIDIA Test {i}", f"GPU-{i}", g * 1024) for i, g in enumerate(gib))
    return GpuInventory(present=True, driver_version="550.54.15", cuda_driver_version=cuda, devices=devices)


def _patch_nvml(monkeypatch, fake: FakeNvml) -> None:
    for name, fn in fake.functions().items():
        monkeypatch.setattr(pynvml, name, fn)


@pytest.fixture
def fresh_torch_info():
    """torch_info is cached per process; tests that fake torch must not leak into others."""
    torch_info.cache_clear()
    try:
        yield
    finally:
        torch_info.cache_clear()


def test_python_version():
    assert check_python((3, 11, 7)).status == PASS
    finding = check_python((3, 10, 12))
    assert finding.status == FAIL and "3.11 or newer" in finding.detail


def test_torch_present_and_absent():
    assert check_torch(CPU_TORCH).status == PASS and "CPU build" in check_torch(CPU_TORCH).detail
    assert "CUDA 12.4 build" in check_torch(CUDA_TORCH).detail
    finding = check_torch({"version": "absent", "reason": "No module named 'torch'"})
    assert finding.status == FAIL and "No module named 'torch'" in finding.detail
    assert "pip install 'gpu-inference-harness[service]'" in finding.detail  # how to get it


def test_no_gpu_is_absent_unless_required():
    for require, expected in ((False, ABSENT), (True, FAIL)):
        statuses = {
            check_cuda_runtime(CPU_TORCH, NO_GPU, require).status,
            check_cudnn(CPU_TORCH, NO_GPU, require).status,
            check_nvidia_driver(NO_GPU, require).status,
            check_gpu_memory(NO_GPU, require_gpu=require).status,
        }
        assert statuses == {expected}
    assert "libnvidia-ml.so.1" in check_nvidia_driver(NO_GPU, True).detail
    assert "requires a GPU" in check_nvidia_driver(NO_GPU, True).detail


def test_gpu_memory_thresholds_use_the_largest_board():
    assert check_gpu_memory(_gpu(22.5)).status == PASS  # a "24 GB" A10
    assert check_gpu_memory(_gpu(15.0)).status == PASS  # a "16 GB" board: 16.1 decimal GB
    assert check_gpu_memory(_gpu(11.0)).status == WARN
    low = check_gpu_memory(_gpu(6.0))
    assert low.status == FAIL and "minimum of 8 GB" in low.detail
    assert check_gpu_memory(_gpu(4.0, 40.0)).status == PASS  # runs can be pinned to the big one
    assert check_gpu_memory(_gpu(20.0), min_gb=24, recommended_gb=32).status == FAIL


def test_cuda_runtime_against_driver_and_torch_build():
    assert check_cuda_runtime(CUDA_TORCH, _gpu(40)).status == PASS
    old_driver = check_cuda_runtime(CUDA_TORCH, _gpu(40, cuda="12.1"))
    assert old_driver.status == WARN and "newer than the driver" in old_driver.detail
    assert check_cuda_runtime(CUDA_TORCH, _gpu(40, cuda="12.1"), require_gpu=True).status == FAIL
    cpu_build = check_cuda_runtime(CPU_TORCH, _gpu(40))
    assert cpu_build.status == WARN and "inference runs on CPU" in cpu_build.detail
    broken = dict(CUDA_TORCH, cuda_available=False, cuda_error="RuntimeError: CUDA unknown error")
    assert check_cuda_runtime(broken, _gpu(40)).status == WARN
    assert "CUDA unknown error" in check_cuda_runtime(broken, _gpu(40), True).detail
    assert check_cudnn(CUDA_TORCH, _gpu(40)).status == PASS
    assert check_cudnn(dict(CUDA_TORCH, cudnn=None), _gpu(40)).status == WARN


def test_whole_preflight_passes_with_a_fake_gpu(monkeypatch, tmp_path: Path):
    fake = FakeNvml([{"name": "NVIDIA L4", "memory_total_mb": 23034, "util_percent": 0, "power_w": 16.0}])
    _patch_nvml(monkeypatch, fake)
    monkeypatch.setattr(preflight, "torch_info", lambda: CUDA_TORCH)
    findings = run_preflight(PreflightOptions(require_gpu=True, weights_dir=tmp_path, min_free_disk_gb=0))
    by_name = {f.name: f for f in findings}
    for name in ("python", "torch", "cuda_runtime", "cudnn", "nvidia_driver", "gpu_memory", "ports", "disk"):
        assert by_name[name].status == PASS, by_name[name]
    assert "NVIDIA L4" in by_name["gpu_memory"].detail and "550.54.15" in by_name["nvidia_driver"].detail
    validate_preflight(findings)  # does not raise
    assert fake.initialised == 0


def test_small_gpu_fails_and_every_failure_is_listed(monkeypatch, tmp_path: Path):
    _patch_nvml(monkeypatch, FakeNvml([{"name": "NVIDIA T400", "memory_total_mb": 2048}]))
    monkeypatch.setattr(preflight, "torch_info", lambda: {"version": "absent", "reason": "No module named 'torch'"})
    findings = run_preflight(PreflightOptions(weights_dir=tmp_path, min_free_disk_gb=0))
    with pytest.raises(VerdictFailed) as caught:
        validate_preflight(findings)
    assert caught.value.exit_code == 1
    assert [line.split(":")[0] for line in caught.value.findings] == ["torch", "gpu_memory"]
    assert "NVIDIA T400" in str(caught.value)


def test_torch_really_absent(monkeypatch, fresh_torch_info):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    info = torch_info()
    assert info["version"] == "absent"
    assert check_torch(info).status == FAIL
    assert check_cuda_runtime(info, NO_GPU).status == ABSENT


def test_options_name_the_bad_flag():
    with pytest.raises(ConfigError, match="--recommended-gpu-memory-gb=4"):
        PreflightOptions(recommended_gpu_memory_gb=4)
    with pytest.raises(ConfigError, match="--min-gpu-memory-gb=0"):
        PreflightOptions(min_gpu_memory_gb=0)
    with pytest.raises(ConfigError, match="--ports=5000"):
        PreflightOptions(ports=5000)


def test_ports_bind_and_failure(monkeypatch):
    assert check_ports(3).status == PASS

    class NoBind:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def bind(self, address):
            raise OSError(98, "Address already in use")

    monkeypatch.setattr(preflight.socket, "socket", NoBind)
    finding = check_ports(2)
    assert finding.status == FAIL and "Address already in use" in finding.detail


def test_disk_space(tmp_path: Path):
    assert check_disk(tmp_path / "not" / "yet" / "made", 0).status == PASS  # nearest existing parent counts
    short = check_disk(tmp_path, 10**9)
    assert short.status == FAIL and "need 1e+09 GB" in short.detail


def test_cgroups_fake_roots(tmp_path: Path):
    assert {f.status for f in check_cgroups(tmp_path)} == {WARN}  # nothing mounted
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (v2 / "cgroup.subtree_control").write_text("cpu\n")
    findings = {f.name: f for f in check_cgroups(v2)}
    assert findings["cgroup_memory"].status == WARN and "not enabled" in findings["cgroup_memory"].detail
    # a plain directory accepts mkdir, but the kernel would have created cpu.max: not a cgroup
    assert findings["cgroup_cpu"].status == WARN and "no cpu.max" in findings["cgroup_cpu"].detail
    assert not [p for p in v2.iterdir() if p.name.startswith("harness-preflight")]  # probe cleaned up


def test_cgroups_real_probe_leaves_nothing_behind():
    info = cgroup_info()
    findings = {f.name: f for f in check_cgroups()}
    for controller in ("memory", "cpu"):
        finding = findings[f"cgroup_{controller}"]
        assert finding.status in (PASS, WARN)
        if info["version"] == "v1" and info[f"{controller}_writable"]:
            assert finding.status == PASS, finding.detail
            left = [p for p in Path("/sys/fs/cgroup", controller).iterdir() if p.name.startswith(f"harness-preflight-{os.getpid()}")]
            assert left == []


def test_table_and_json_forms():
    findings = [Finding("python", PASS, "Python 3.11.7"), Finding("gpu_memory", ABSENT, "no GPU"),
                Finding("ports", FAIL, "none free")]
    table = render_table(findings)
    assert "gpu_memory" in table and "ABSENT" in table and table.splitlines()[-1].startswith("preflight FAILED")
    data = findings_to_json(findings, PreflightOptions(require_gpu=True))
    assert data["ok"] is False and data["failed"] == ["ports"] and data["require_gpu"] is True
    assert data["checks"][1] == {"name": "gpu_memory", "status": "absent", "detail": "no GPU"}


def test_cli_here_reports_gpu_state_and_exits_0(capsys, tmp_path: Path):
    code = main(["preflight", "--json", "--weights-dir", str(tmp_path), "--min-free-disk-gb", "0"])
    data = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in data["checks"]} >= {"python", "torch", "nvidia_driver", "gpu_memory", "ports"}
    if not query_gpus().present:
        assert code == 0 and data["ok"] is True
        assert {c["name"]: c["status"] for c in data["checks"]}["nvidia_driver"] == "absent"


def test_cli_require_gpu_without_gpu_exits_1_with_reason(tmp_path: Path):
    if query_gpus().present:
        pytest.skip("a GPU is present here, so --require-gpu has nothing to refuse")
    done = subprocess.run(
        [sys.executable, "-m", "harness", "preflight", "--require-gpu", "--weights-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "preflight FAILED" in done.stdout
    assert "nvidia_driver" in done.stderr and "requires a GPU" in done.stderr
