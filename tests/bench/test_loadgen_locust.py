"""`harness bench loadgen --generator locust`: its window, settings and table. (The figure itself, Locust's master
with N workers against one Locust process, is the benchmark's to print.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.bench.loadgen_locust import LocustBenchSettings, _figure, format_locust_table, window_throughput
from harness.errors import ConfigError


def _record(intended_s: float, ok: bool = True):
    return SimpleNamespace(intended_s=intended_s, ok=ok)


def test_the_window_counts_answered_requests_sent_after_the_warm_up_per_second():
    records = [_record(100.0 + i * 0.01) for i in range(500)]  # 100 req/s for 5 s
    records[250] = _record(records[250].intended_s, ok=False)  # a failure is sent but not answered
    rate, sent = window_throughput(records, warmup_s=1.0, probe_s=3.0)
    assert sent == 300 and rate == pytest.approx(299 / 3.0)
    assert window_throughput([], 1.0, 3.0) == (0.0, 0)


@pytest.mark.parametrize("field, value", [("workers", 1), ("workers", 65), ("users", 0), ("rounds", 0),
                                          ("probe_s", 0.5), ("rounds", 1.5), ("min_ratio", -1.0)])
def test_bad_settings_are_one_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        LocustBenchSettings(**{field: value}).validate()
    assert info.value.field == field


def test_each_count_is_the_median_of_its_runs_and_the_table_names_the_master():
    runs = [{"throughput_rps": r, "generator_saturated": s} for r, s in ((4000.0, True), (4400.0, True), (4200.0, False))]
    assert _figure(runs) == {"throughput_rps": 4200.0, "runs_rps": [4000.0, 4400.0, 4200.0], "saturated_runs": 2,
                             "text": "4200"}
    result = {"workers": 2, "figures": {"1": _figure(runs[:1]), "2": _figure(runs[1:])}, "ratio": 1.075,
              "meets_claim": False, "settings": {"min_ratio": 1.2}, "generator_cpus": [0, 1], "machine": {},
              "elapsed_s": 20.0}
    table = format_locust_table(result)
    assert "      2+m  4300" in table and "2 workers / 1 process: 1.07x (claim >= 1.2x: NO)" in table
