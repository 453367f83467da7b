"""`harness bench netfault`'s figures and checks, from request records made here (no deployment)."""

from __future__ import annotations

import pytest

from harness.bench.netfault import NetfaultSettings, _judge, format_netfault_table, window_figures
from harness.cli import main
from harness.errors import ConfigError
from harness.request_records import RequestRecord


def _records(start_s: float, count: int, rate: float, latency_ms: float, fail_every: int = 0, status: int = 503) -> list:
    out = []
    for i in range(count):
        failed = fail_every and i % fail_every == 0
        out.append(RequestRecord(start_s + i / rate, start_s + i / rate, latency_ms + (i % 7) * 0.1,
                                 status if failed else 200, not failed))
    return out


def _run(settings: NetfaultSettings, abort_every: int, added_ms: float) -> dict:
    rate, t = settings.rate_rps, 1000.0
    records, windows = [], {}
    for name, length_s in settings.fault_windows_s().items():
        count = int(length_s * rate)
        windows[name] = (t, t + length_s)
        latency = 5.0 + (added_ms if name.startswith("latency") else 0.0)
        every = abort_every if name == "abort" else (3 if name == "reset" else 0)
        records += _records(t - 0.5, int(0.5 * rate), rate, 999.0)  # the guard before: outside every window
        records += _records(t, count + 50, rate, latency, every, status=503 if name == "abort" else 0)
        t += length_s + 2.0
    return _judge(settings, records, windows)


def test_the_checks_take_the_first_n_requests_of_the_abort_window_and_the_p50_shift():
    settings = NetfaultSettings(rate_rps=100, latency_window_s=5, latency_pairs=2, abort_requests=2000, reset_requests=300)
    result = _run(settings, abort_every=5, added_ms=100.0)
    abort, latency = result["checks"]["abort"], result["checks"]["latency"]
    assert (abort["requests"], abort["failed_pct"], abort["status_count"]) == (2000, 20.0, 400)
    assert latency["added_ms"] == pytest.approx(100.0) and latency["baseline_p50_ms"] == pytest.approx(5.3)
    assert list(result["windows"])[:4] == ["baseline-1", "latency-1", "latency-2", "baseline-2"]  # ABBA
    assert latency["pair_added_ms"] == [100.0, 100.0] and latency["shift_ms"] == pytest.approx(100.0)
    assert result["all_within_tolerance"]
    assert result["windows"]["reset"]["requests"] == 300 and result["windows"]["reset"]["statuses"]["0"] == 100
    table = format_netfault_table({**result, "machine": {"cpus": 2}})
    assert "p50 moved by +100.0 ms (median of 2 side-by-side pairs: +100.0, +100.0; pooled +100.0 ms" in table
    assert "(claim +100 ms, within +-10 ms: yes)" in table and "20.0% of 2000 requests failed" in table


def test_a_figure_off_its_claim_fails_its_check():
    settings = NetfaultSettings(rate_rps=100, latency_window_s=5, latency_pairs=3, abort_requests=1000, reset_requests=0)
    result = _run(settings, abort_every=4, added_ms=115.0)  # 25% failed, +115 ms
    assert not result["checks"]["abort"]["within_tolerance"] and not result["checks"]["latency"]["within_tolerance"]
    assert not result["all_within_tolerance"] and "reset" not in result["windows"]


def test_the_shift_is_the_median_of_the_pairs_so_one_spoiled_pair_does_not_move_it():
    settings = NetfaultSettings(rate_rps=100, latency_window_s=2, latency_pairs=3, abort_requests=500, reset_requests=0)
    rate, t, records, windows = settings.rate_rps, 1000.0, [], {}
    for name, length_s in settings.fault_windows_s().items():
        windows[name] = (t, t + length_s)
        spoiled = 300.0 if name == "latency-2" else 0.0  # a burst of other work on the machine in one window
        latency = 5.0 + (100.0 + spoiled if name.startswith("latency") else 0.0)
        records += _records(t, int(length_s * rate), rate, latency)
        t += length_s + 2.0
    latency = _judge(settings, records, windows)["checks"]["latency"]
    assert latency["pair_added_ms"] == [100.0, 400.0, 100.0] and latency["shift_ms"] == pytest.approx(100.0)
    assert latency["within_tolerance"]


def test_window_figures_of_an_empty_window_are_none_not_zero():
    assert window_figures([], 0.0, 1.0) == {"requests": 0, "failed": 0, "failed_pct": None, "p50_ms": None,
                                            "statuses": {}, "_latencies": []}


@pytest.mark.parametrize("field, value", [("rate_rps", 0), ("abort_percent", 120), ("abort_requests", 0),
                                          ("latency_ms", -5), ("abort_status", 200)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}={value}: "):
        NetfaultSettings(**{field: value}).validate()


def test_the_command_refuses_a_bad_flag_before_deploying(tmp_path, capsys):
    assert main(["bench", "netfault", "--abort-percent", "0", "--out", str(tmp_path / "out")]) == 2
    assert "abort_percent=0" in capsys.readouterr().err
    assert not (tmp_path / "out" / "deployment").exists()
