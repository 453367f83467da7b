"""The NVML helper: absent reasons, inventory, samples with unsupported values, and a real GPU when present."""

from __future__ import annotations

import pynvml
import pytest

from harness.gpu import FakeNvml, GpuError, NvmlSession, query_gpus


def _patch_nvml(monkeypatch, fake: FakeNvml) -> None:
    for name, fn in fake.functions().items():
        monkeypatch.setattr(pynvml, name, fn)


@pytest.mark.parametrize("code, words", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "not loaded"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "no permission"),
    (pynvml.NVML_ERROR_UNKNOWN, "NVML could not start"),
])
def test_absent_reasons(monkeypatch, code: int, words: str):
    _patch_nvml(monkeypatch, FakeNvml(init_error=code))
    inventory = query_gpus()
    assert not inventory.present and words in inventory.reason
    assert inventory.to_dict() == {"present": False, "reason": inventory.reason}


def test_sample_reports_unsupported_values_as_none(monkeypatch):
    fake = FakeNvml([{"name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory_total_mb": 4864, "memory_used_mb": 100,
                      "util_percent": None, "power_w": None, "processes": {4242: 96}}])
    _patch_nvml(monkeypatch, fake)
    with NvmlSession() as session:
        (sample,) = session.sample()
    assert sample.util_percent is None and sample.power_w is None
    assert sample.memory_used_mb == 100.0 and sample.memory_total_mb == 4864.0
    assert sample.process_memory_mb == {4242: 96.0}
    assert fake.initialised == 0


def test_byte_strings_from_old_bindings_are_decoded(monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml([{"name": "NVIDIA T4", "memory_total_mb": 15360}]))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda handle: b"Tesla T4")
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: b"535.104.05")
    inventory = query_gpus()
    assert inventory.devices[0].name == "Tesla T4" and inventory.driver_version == "535.104.05"


def test_query_failure_on_present_gpu_is_translated(monkeypatch):
    _patch_nvml(monkeypatch, FakeNvml([{"name": "NVIDIA A10", "memory_total_mb": 23028}]))

    def lost(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lost)
    with NvmlSession() as session:
        with pytest.raises(GpuError, match="nvmlDeviceGetUtilizationRates failed: GPU is lost") as caught:
            session.sample()
    assert isinstance(caught.value.__cause__, pynvml.NVMLError)


def test_sessions_nest_and_close_is_idempotent(monkeypatch):
    fake = FakeNvml([{"name": "NVIDIA L4", "memory_total_mb": 23034}])
    _patch_nvml(monkeypatch, fake)
    outer = NvmlSession().open()
    with NvmlSession() as inner:
        assert inner.present and fake.initialised == 2
    outer.close()
    outer.close()
    assert fake.initialised == 0 and not outer.present


@pytest.mark.gpu
def test_real_gpu_inventory_and_sample():
    inventory = query_gpus()
    if not inventory.present:
        pytest.skip(f"no GPU here: {inventory.reason}")
    assert inventory.driver_version and inventory.devices[0].memory_total_mb > 0
    with NvmlSession() as session:
        samples = session.sample()
    assert len(samples) == len(inventory.devices)
    assert samples[0].memory_used_mb is not None and samples[0].memory_used_mb <= samples[0].memory_total_mb
