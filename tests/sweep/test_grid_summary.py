"""Plan validation, the tidy CSV, and the summary's statistics, SLO verdicts and frontier on known samples."""

from __future__ import annotations

import math

import pytest

from harness.errors import ConfigError
from harness.measure.stats import summarize_repeats
from harness.sweep.grid import (
    CSV_COLUMNS, PROFILES, PointKey, SweepCsvWriter, WindowMeasurement, build_plan, enumerate_points, read_sweep_csv,
)
from harness.sweep.summary import pareto_frontier, summarize_points, summarize_sweep
from harness.sweep.table import format_sweep


def test_profiles_build_valid_plans():
    smoke = build_plan("smoke")
    assert set(smoke.precisions) == {"fp32", "bf16"} and smoke.batch_sizes == (1, 32) and len(smoke.load_levels) == 2
    nightly = build_plan("nightly")
    assert "fp16" in nightly.precisions and nightly.search and len(nightly.batch_sizes) > 2
    assert set(PROFILES) == {"smoke", "nightly"}
    custom = build_plan("smoke", precisions=["fp32"], batch_sizes=[8], load_levels=[10.0], p99_ms=None)
    assert custom.precisions == ("fp32",) and custom.batch_sizes == (8,) and custom.p99_ms == 500.0


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        ({"precisions": ("fp64",)}, "precisions", "fp64"),
        ({"batch_sizes": (0,)}, "batch_sizes", 0),
        ({"load_levels": (-5.0,)}, "load_levels", -5.0),
        ({"p99_ms": 0.0}, "p99_ms", 0.0),
        ({"model": "resnet"}, "model", "resnet"),
        ({"min_windows": 1}, "min_windows", 1),
        ({"point_budget_s": 5.0}, "point_budget_s", 5.0),
        ({"colour": "red"}, "colour", "red"),
    ],
)
def test_invalid_plan_names_field_and_value(overrides, field, value):
    with pytest.raises(ConfigError) as info:
        build_plan("smoke", **overrides)
    assert info.value.field == field and info.value.value == value


def test_unknown_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="profile='weekly'"):
        build_plan("weekly")


def test_points_are_grouped_by_configuration_light_load_first():
    plan = build_plan("smoke", load_levels=(200.0, 50.0))
    points = enumerate_points(plan)
    assert points[:2] == [PointKey("fp32", 1, 50.0), PointKey("fp32", 1, 200.0)]
    assert len(points) == 8 and len({p.config for p in points}) == 4


def _window(thr, p99, p50=10.0, err=0.0, level=None):
    return WindowMeasurement(throughput_rps=thr, p50_ms=p50, p95_ms=(p50 + p99) / 2, p99_ms=p99, error_rate=err,
                             requests=100, sent_rate_rps=level if level is not None else thr)


def _write(path, plan, points):
    with SweepCsvWriter(path, plan) as writer:
        for key, windows, status, reason in points:
            if windows:
                for i, w in enumerate(windows, 1):
                    writer.write(key, i, w, "ok", reason if i == len(windows) else "")
            else:
                writer.write(key, 0, None, status, reason)


def test_csv_round_trip_and_summary_statistics_on_known_samples(tmp_path):
    plan = build_plan("smoke")
    thr = [98.0, 100.0, 101.0, 103.0, 99.0]
    p99 = [120.0, 150.0, 130.0, 140.0, 135.0]
    key = PointKey("fp32", 32, 100.0)
    skipped = PointKey("fp16", 32, 100.0)
    _write(tmp_path / "sweep.csv", plan, [
        (key, [_window(t, p, level=100.0) for t, p in zip(thr, p99)], "ok", "cap of 5 windows reached"),
        (skipped, [], "skipped", "pre-check: too slow"),
    ])
    rows = list(read_sweep_csv(tmp_path / "sweep.csv"))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 6 and rows[-1]["status"] == "skipped" and math.isnan(rows[-1]["p99_ms"])
    points = {p["precision"]: p for p in summarize_points(rows, p99_ms=500.0)}
    fp32 = points["fp32"]
    expected = summarize_repeats(thr)
    assert fp32["throughput_rps"] == 100.0 == expected.median
    assert fp32["throughput_rps_ci"] == [pytest.approx(expected.ci.low), pytest.approx(expected.ci.high)]
    assert fp32["throughput_rps_ci"][0] < 100.0 < fp32["throughput_rps_ci"][1]
    assert fp32["p99_ms"] == 135.0 and fp32["windows"] == 5 and fp32["meets_slo"]
    assert fp32["reason"] == "cap of 5 windows reached"
    assert points["fp16"]["status"] == "skipped" and points["fp16"]["windows"] == 0 and not points["fp16"]["meets_slo"]
    assert points["fp16"]["reason"] == "pre-check: too slow"


def test_slo_verdict_counts_p99_errors_and_keeping_up():
    rows = []
    plan = build_plan("smoke")
    for level, p99, err, thr in [(50.0, 100.0, 0.0, 50.0), (100.0, 700.0, 0.0, 100.0), (200.0, 200.0, 0.2, 160.0)]:
        for repeat in (1, 2, 3):
            rows.append({"precision": "fp32", "max_batch_size": 1, "load_level": level, "status": "ok", "reason": "",
                         "repeat": repeat, "throughput_rps": thr, "p50_ms": 10.0, "p95_ms": 50.0, "p99_ms": p99,
                         "error_rate": err, "sent_rate_rps": level, "cpu_percent": 90.0, "rss_mb": 500.0,
                         "gpu_util_percent": math.nan, "gpu_memory_mb": math.nan, "generator_saturated": 0})
    verdicts = {p["load_level"]: p for p in summarize_points(rows, p99_ms=plan.p99_ms)}
    assert verdicts[50.0]["meets_slo"]
    assert not verdicts[100.0]["meets_slo"] and "p99 700.0 ms > SLO 500 ms" in verdicts[100.0]["slo_verdict"]
    assert not verdicts[200.0]["meets_slo"] and "error rate" in verdicts[200.0]["slo_verdict"]
    summary = summarize_sweep(rows, p99_ms=500.0)
    assert summary["configurations"][0]["best_under_slo"]["load_level"] == 50.0
    assert summary["configurations"][0]["peak"]["load_level"] == 200.0


def test_pareto_frontier_keeps_only_undominated_points():
    points = [
        {"name": "a", "throughput_rps": 50.0, "p99_ms": 80.0},
        {"name": "b", "throughput_rps": 100.0, "p99_ms": 120.0},
        {"name": "c", "throughput_rps": 90.0, "p99_ms": 150.0},  # dominated by b
        {"name": "d", "throughput_rps": 200.0, "p99_ms": 400.0},
        {"name": "e", "throughput_rps": 40.0, "p99_ms": 90.0},  # dominated by a
        {"name": "f", "throughput_rps": math.nan, "p99_ms": 10.0},  # not measured
    ]
    assert [p["name"] for p in pareto_frontier(points)] == ["a", "b", "d"]


def test_effects_show_batching_and_precision_next_to_accuracy():
    def rows_for(precision, batch, level, thr, p50):
        return [{"precision": precision, "max_batch_size": batch, "load_level": level, "status": "ok", "reason": "",
                 "repeat": r, "throughput_rps": thr, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p50 * 3,
                 "error_rate": 0.0 if thr >= level * 0.95 else 0.5, "sent_rate_rps": level, "cpu_percent": 90.0,
                 "rss_mb": 500.0, "gpu_util_percent": math.nan, "gpu_memory_mb": math.nan, "generator_saturated": 0}
                for r in (1, 2, 3)]

    rows = (rows_for("fp32", 1, 50.0, 50.0, 20.0) + rows_for("fp32", 1, 200.0, 75.0, 2000.0)
            + rows_for("fp32", 32, 50.0, 50.0, 60.0) + rows_for("fp32", 32, 200.0, 200.0, 90.0)
            + rows_for("bf16", 1, 50.0, 50.0, 10.0) + rows_for("bf16", 1, 200.0, 130.0, 1500.0))
    accuracy = [{"precision": "bf16", "status": "ok", "max_abs_error": 1e-4, "mean_abs_error": 4e-5,
                 "max_rel_error": 4e-3, "top1_agreement": 1.0, "speedup_vs_fp32": 3.5}]
    summary = summarize_sweep(rows, p99_ms=500.0, accuracy=accuracy)
    batching = {(e["precision"], e["load_level"]): e["throughput_ratio"] for e in summary["effects"]["batching"]}
    assert batching[("fp32", 200.0)] == pytest.approx(200.0 / 75.0)
    (bf16,) = summary["effects"]["precision"]
    assert bf16["peak_throughput_ratio"] == pytest.approx(130.0 / 75.0)
    assert bf16["p50_speedup_at_light_load"] == pytest.approx(2.0) and bf16["light_load_level"] == 50.0
    assert bf16["max_abs_error"] == 1e-4 and bf16["forward_speedup"] == 3.5
    text = format_sweep(summary)
    assert "32 vs 1" in text and "2.67" in text and "1.00e-04" in text
