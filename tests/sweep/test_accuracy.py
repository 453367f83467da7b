"""Accuracy drift: the error measures on known arrays, and a real, time-bounded run of the service's runner."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.sweep.accuracy import AccuracyDrift, _drifts, _with_forward, compare_outputs, measure_accuracy


def test_compare_outputs_on_known_arrays():
    ref = np.array([[1.0, -2.0, 0.5], [0.0, 4.0, 1.0]])
    cand = ref + np.array([[0.1, 0.0, 0.0], [0.0, -0.2, 0.0]])
    m = compare_outputs(ref, cand)
    assert m["max_abs_error"] == pytest.approx(0.2)
    assert m["mean_abs_error"] == pytest.approx(0.3 / 6)
    assert m["max_rel_error"] == pytest.approx(0.2 / 4.0)
    assert m["mean_rel_error"] == pytest.approx((0.3 / 6) / (8.5 / 6))
    assert m["top1_agreement"] == 1.0
    flipped = ref.copy()
    flipped[0] = [1.0, -2.0, 1.5]  # arg-max of the first row moves
    assert compare_outputs(ref, flipped)["top1_agreement"] == 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        compare_outputs(ref, ref[:1])


def test_missing_and_partial_precisions_are_recorded_not_dropped():
    reference = {"precision": "fp32", "status": "ok", "outputs": [[1.0, 2.0], [3.0, 4.0]], "forward_ms": 10.0,
                 "forward_ms_by_samples": {"2": 10.0, "1": 6.0}}
    slow = {"precision": "fp16", "status": "ok", "reason": "1 of 2 samples", "outputs": [[1.0, 2.5]], "forward_ms": 600.0}
    drifts = {d.precision: d for d in _drifts(["fp32", "fp16", "bf16"], {"fp32": reference, "fp16": slow},
                                              "timeout", "not finished within the accuracy budget of 5 s")}
    assert drifts["fp16"].samples == 1 and drifts["fp16"].max_abs_error == 0.5
    assert drifts["fp16"].speedup_vs_fp32 == pytest.approx(6.0 / 600.0)  # compared at the same sample count
    assert drifts["bf16"].status == "timeout" and "budget of 5 s" in drifts["bf16"].reason
    assert math.isnan(drifts["bf16"].max_abs_error)


def test_invalid_arguments_name_the_field():
    with pytest.raises(ConfigError) as info:
        measure_accuracy("ranker-mlp", ["fp8"])
    assert info.value.field == "precisions" and info.value.value == "fp8"
    with pytest.raises(ConfigError) as info:
        measure_accuracy("ranker-mlp", ["bf16"], samples=0)
    assert info.value.field == "samples"


@pytest.mark.slow
def test_bf16_drifts_a_little_and_fp32_not_at_all(tmp_path):
    drifts = {d.precision: d for d in measure_accuracy("tiny-mlp", ["bf16"], samples=4, time_budget_s=60,
                                                      weights_dir=str(tmp_path))}
    assert drifts["fp32"].status == "ok" and drifts["fp32"].max_abs_error == 0.0
    bf16 = drifts["bf16"]
    assert bf16.status == "ok" and bf16.samples == 4
    assert 0 < bf16.max_abs_error < 0.1 and bf16.mean_abs_error <= bf16.max_abs_error
    assert math.isfinite(bf16.speedup_vs_fp32) and bf16.speedup_vs_fp32 > 0


@pytest.mark.slow
def test_a_budget_too_small_records_timeouts(tmp_path):
    drifts = measure_accuracy("tiny-mlp", ["bf16", "fp16"], samples=4, time_budget_s=0.01, weights_dir=str(tmp_path))
    assert [d.precision for d in drifts] == ["fp32", "bf16", "fp16"]
    assert all(d.status in ("timeout", "skipped", "ok") for d in drifts)
    assert any(d.status in ("timeout", "skipped") for d in drifts)
    assert all(d.reason for d in drifts if d.status != "ok")


def test_forward_timings_attach_to_each_precision_or_say_why_not():
    forward = {"forward": {"fp32": {"1": 1.5, "32": 20.0}}, "reasons": {"fp16": "one sample takes 900 ms: too slow"}}
    fp32 = _with_forward(AccuracyDrift("fp32", "ok"), forward, "")
    assert fp32.forward_ms_by_batch == {"1": 1.5, "32": 20.0} and fp32.forward_reason == ""
    fp16 = _with_forward(AccuracyDrift("fp16", "ok"), forward, "")
    assert fp16.forward_ms_by_batch == {} and "too slow" in fp16.forward_reason
    lost = _with_forward(AccuracyDrift("bf16", "timeout"), {}, "not finished within the accuracy budget of 5 s")
    assert "forward pass not timed" in lost.forward_reason and "budget of 5 s" in lost.forward_reason


@pytest.mark.slow
def test_the_forward_pass_is_timed_per_precision_and_batch_size(tmp_path):
    drifts = {d.precision: d for d in measure_accuracy("tiny-mlp", ["bf16"], samples=4, time_budget_s=60,
                                                      weights_dir=str(tmp_path), forward_batches=(1, 8),
                                                      forward_window_s=0.05, forward_rounds=2)}
    for precision in ("fp32", "bf16"):
        timed = drifts[precision].forward_ms_by_batch
        assert set(timed) == {"1", "8"} and all(ms > 0 for ms in timed.values()), drifts[precision]
