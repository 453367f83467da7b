"""Plan validation, the tidy CSV, and the summary's statistics, SLO verdicts, frontier and effects on known samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.measure.stats import summarize_repeats
from harness.sweep.grid import (
    CSV_COLUMNS, PRESETS, PointKey, SweepCsvWriter, WindowMeasurement, build_plan, enumerate_points, read_sweep_csv,
)
from harness.sweep.summary import pareto_frontier, summarize_points, summarize_sweep
from harness.sweep.table import format_sweep


def test_presets_build_valid_plans():
    smoke = build_plan("smoke")
    assert set(smoke.precisions) == {"fp32", "bf16"} and smoke.batch_sizes == (1, 32) and smoke.search
    assert smoke.load_levels == (50.0,)  # one light rate for latencies; max rates come from the searches
    nightly = build_plan("nightly")
    assert "fp16" in nightly.precisions and nightly.search and len(nightly.batch_sizes) > 2
    with pytest.raises(ConfigError, match="load_levels"):
        build_plan("smoke", load_levels=(), search=False)  # nothing to measure
    assert set(PRESETS) == {"smoke", "nightly"}
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


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="preset='weekly'"):
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


def _rows_for(precision, batch, level, thr, p50, p99=None):
    return [{"precision": precision, "max_batch_size": batch, "load_level": level, "status": "ok", "reason": "",
             "repeat": r, "throughput_rps": thr, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p99 or p50 * 3,
             "error_rate": 0.0 if thr >= level * 0.95 else 0.5, "sent_rate_rps": level, "cpu_percent": 90.0,
             "rss_mb": 500.0, "gpu_util_percent": math.nan, "gpu_memory_mb": math.nan, "generator_saturated": 0}
            for r in (1, 2, 3)]


def _search(low, high, converged=True, stop="converged"):
    probes = [{"rate_rps": low, "verdict": "pass", "reason": "ok", "measurement": {"throughput_rps": low, "p99_ms": 200.0,
                                                                                    "p50_ms": 50.0, "windows": 2}}]
    if high:
        probes.append({"rate_rps": high, "verdict": "fail", "reason": "p99", "measurement": {
            "throughput_rps": high * 0.9, "p99_ms": 900.0, "p50_ms": 400.0, "windows": 2}})
    return {"max_rate_rps": low, "lower_rps": low, "upper_rps": high, "converged": converged, "stop_reason": stop,
            "detail": stop, "probe_count": len(probes), "probes": probes}


def test_effects_are_ratios_of_searched_max_rates_next_to_the_forward_pass_and_accuracy():
    rows = (_rows_for("fp32", 1, 50.0, 50.0, 20.0) + _rows_for("fp32", 32, 50.0, 50.0, 60.0)
            + _rows_for("bf16", 1, 50.0, 50.0, 10.0) + _rows_for("bf16", 32, 50.0, 50.0, 40.0))
    searches = {"fp32/1": _search(140.0, 145.0), "fp32/32": _search(550.0, 575.0),
                "bf16/1": _search(150.0, 156.0), "bf16/32": _search(900.0, 2000.0, converged=False, stop="timeout")}
    accuracy = [{"precision": "fp32", "status": "ok", "forward_ms_by_batch": {"1": 1.0, "32": 8.0}},
                {"precision": "bf16", "status": "ok", "max_abs_error": 1e-4, "mean_abs_error": 4e-5, "max_rel_error": 4e-3,
                 "top1_agreement": 1.0, "speedup_vs_fp32": 3.5, "forward_ms_by_batch": {"1": 0.9, "32": 4.0}}]
    summary = summarize_sweep(rows, p99_ms=500.0, accuracy=accuracy, searches=searches)
    batching = {e["precision"]: e for e in summary["effects"]["batching"]}
    fp32 = batching["fp32"]
    assert fp32["effect"]["bound"] == "exact" and fp32["effect"]["value"] == pytest.approx(550.0 / 140.0)
    assert fp32["forward_speedup"]["value"] == pytest.approx(1.0 / (8.0 / 32))  # per sample: 1 ms vs 0.25 ms
    assert fp32["effect_vs_forward"]["value"] == pytest.approx((550.0 / 140.0) / 4.0)
    # both point the same way: a gain beyond the noise two searches of one configuration show
    assert fp32["direction"] == {"effect": "gain", "forward": "gain", "agree": True}
    # bf16 at batch 32 did not converge: its effects are bounds, bracketed by what failed
    assert batching["bf16"]["effect"]["bound"] == "range"
    assert batching["bf16"]["effect"]["low"] == pytest.approx(900.0 / 156.0)
    assert batching["bf16"]["effect"]["high"] == pytest.approx(2000.0 / 150.0)
    assert batching["bf16"]["effect"]["text"].startswith("between")
    # latency at the same load, below both knees: batching costs latency at 50 rps
    assert fp32["same_load_rps"] == 50.0 and fp32["p50_speedup_at_same_load"] == pytest.approx(20.0 / 60.0)
    precision = {e["max_batch_size"]: e for e in summary["effects"]["precision"]}
    assert precision[1]["effect"]["value"] == pytest.approx(150.0 / 140.0) and precision[1]["effect"]["bound"] == "exact"
    assert precision[1]["forward_speedup"]["value"] == pytest.approx(1.0 / 0.9)
    # 1.07 and 1.11: neither is a direction (within 15% of 1), so they agree on "none beyond noise"
    assert precision[1]["direction"] == {"effect": "none beyond noise", "forward": "none beyond noise", "agree": True}
    assert precision[32]["effect"]["text"].startswith("between")
    assert precision[32]["forward_speedup"]["value"] == pytest.approx(2.0)
    assert precision[1]["max_abs_error"] == 1e-4 and precision[1]["p50_speedup_at_same_load"] == pytest.approx(2.0)
    # what the forward pass predicts for the service: only the forward part of a request's cost changes
    # (fp32 batch 32 at 550 rps: 1.818 ms per request, 0.25 ms of it forward; bf16's forward 0.125 ms)
    assert precision[32]["forward_share"] == pytest.approx(0.25 / (1000 / 550))
    assert precision[32]["expected_from_forward"]["value"] == pytest.approx((1000 / 550) / (1000 / 550 - 0.25 + 0.125))
    assert precision[32]["effect_vs_expected"]["text"].startswith("between")  # bf16 batch 32 is a bracket
    # batching: batch 1 at 140 rps costs 7.14 ms a request, 1 ms of it forward; batch 32's forward is 0.25 ms
    assert fp32["expected_from_forward"]["value"] == pytest.approx((1000 / 140) / (1000 / 140 - 1.0 + 0.25))
    # ... from the rest paid per request (Amdahl, low end) to the rest paid per batch, amortised 32-fold (high end)
    assert fp32["expected_from_forward"]["low"] == pytest.approx((1000 / 140) / (1000 / 140 - 1.0 + 0.25))
    assert fp32["expected_from_forward"]["high"] == pytest.approx((1000 / 140) / ((1000 / 140 - 1.0) / 32 + 0.25))
    assert fp32["expected_from_forward"]["text"].startswith("between")
    assert fp32["effect_vs_expected"]["value"] == pytest.approx(fp32["effect"]["value"] / fp32["expected_from_forward"]["value"])
    configs = {(c["precision"], c["max_batch_size"]): c for c in summary["configurations"]}
    assert configs[("bf16", 32)]["max_rate"]["text"] == "at least 900.0 (below 2000.0)"
    assert configs[("fp32", 32)]["max_rate"]["text"] == "550.0"
    text = format_sweep(summary)
    assert "32 vs 1" in text and "3.93" in text and "at least 900.0 (below 2000.0)" in text and "1.00e-04" in text


ISSUE_DATA = Path(__file__).parent / "data" / "issue21_smoke_sweep.csv"


def _sustained(point) -> bool:
    # throughput is the offered load (the arrivals the Poisson schedule sent), and within the SLO
    return point["meets_slo"] and point["throughput_rps"] >= 0.95 * point["sent_rate_rps"]


def test_no_effect_comes_from_two_points_whose_throughput_is_the_offered_load():
    # the smoke sweep of the issue: 50 and 150 rps, every configuration but batch 1 keeping up; it once
    # reported "batching effect 1.0" and "precision effect 1.0" (throughput at a load both sustained)
    rows = list(read_sweep_csv(ISSUE_DATA))
    summary = summarize_sweep(rows, p99_ms=500.0)
    points = {(p["precision"], p["max_batch_size"], p["load_level"]): p for p in summary["points"]}
    assert _sustained(points[("fp32", 32, 150.0)]) and _sustained(points[("fp32", 1, 50.0)])
    assert not _sustained(points[("fp32", 1, 150.0)])  # p99 1.5 s: batch 1 is past its knee at 150 rps
    effects = summary["effects"]["batching"] + summary["effects"]["precision"]
    assert len(effects) == 4
    for effect in effects:
        a, b = effect["inputs"]["numerator"], effect["inputs"]["denominator"]

        def point(side, level):
            return points[(side["precision"], side["max_batch_size"], level)]

        # each end of an effect divides a passing rate by a failing one (a / b > a.low / b.high, and
        # < a.high / b.low): one point of each pair is past its knee, never two loads both sustained
        if effect["effect"]["low"] is not None:
            assert _sustained(point(a, a["low"])) and not _sustained(point(b, b["high"])), effect
        if effect["effect"]["high"] is not None:
            assert not _sustained(point(a, a["high"])) and _sustained(point(b, b["low"])), effect
        assert effect["effect"]["bound"] != "exact"  # a grid that tops out gives bounds, never a figure
        assert effect["effect"]["text"] != "1.00"
    batching = {e["precision"]: e["effect"] for e in summary["effects"]["batching"]}
    # batch 32 sustained 150 rps where batch 1 did not: at least 1 is all this grid can say
    assert batching["fp32"]["text"] == "at least 1.00" and batching["fp32"]["low"] == pytest.approx(1.0)
    precision = {e["max_batch_size"]: e["effect"] for e in summary["effects"]["precision"]}
    assert precision[32]["bound"] == "unknown" and math.isnan(precision[32]["value"] or math.nan)  # both topped out
    assert "grid topped out" in precision[32]["detail"]
    assert precision[1]["text"] == "between 0.33 and 3.00"
    # every figure read off this grid is a lower bound, and says so
    for config in summary["configurations"]:
        assert config["max_rate"]["source"] == "grid" and config["max_rate"]["text"].startswith("at least")
    # the same data with the searches the sweep now runs gives figures: the ratio of two max rates
    searches = {f"{p}/{b}": _search(low, high) for (p, b), (low, high) in {
        ("fp32", 1): (133.0, 139.0), ("fp32", 32): (548.7, 576.0), ("bf16", 1): (138.0, 144.0),
        ("bf16", 32): (990.0, 1030.0)}.items()}
    summary = summarize_sweep(rows, p99_ms=500.0, searches=searches)
    batching = {e["precision"]: e["effect"] for e in summary["effects"]["batching"]}
    assert batching["fp32"]["bound"] == "exact" and batching["fp32"]["value"] == pytest.approx(548.7 / 133.0)
