"""`harness bench compare` without deployments: session order, rates with Wilson intervals, the printout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness.bench.ab import SIGNOFF_REPLICAS
from harness.bench import comparebench
from harness.bench.comparebench import CompareBenchSettings, format_compare_bench, run_compare_bench
from harness.errors import ConfigError


def _comparison(flagged: bool, p50_change: float) -> dict[str, Any]:
    verdict = "regressed" if flagged else "no change"
    return {"rows": [{"metric": "load:p50_ms", "change": p50_change, "verdict": verdict, "p_adjusted": 0.001},
                     {"metric": "load:p99_ms", "change": p50_change, "verdict": "no change", "p_adjusted": 0.5}],
            "regressions": ["load:p50_ms: ..."] if flagged else []}


def test_sessions_alternate_and_rates_carry_wilson_intervals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    def fake_ab(a, b, load, out, **options):
        slow = b.fault == "slow-inference"
        calls.append((Path(out).name, b.fault_params.get("factor")))
        assert options["pairs"] == 10 and options["telemetry"] is False and a.spec.service.max_queue_delay_ms == 2.0
        assert options["deploy"] == "requests" and a.spec.replica_count == SIGNOFF_REPLICAS == 2 and a.spec.service.model == "text-encoder"
        assert load.rate_rps == 8.0 and load.request_rows == 32
        # 1 false alarm in 3 A/A sessions; 2 detections in 2 A/B sessions
        flagged = slow or len(calls) == 3
        a = {"rounds": [{"pair": 1, "p50_ms": 60.0}, {"pair": 2, "p50_ms": 62.0}]}
        b = {"rounds": [{"pair": 2, "p50_ms": 62.0}, {"pair": 1, "p50_ms": 60.0 * math.exp(0.03)}]}
        return {"comparison": _comparison(flagged, 0.09 if slow else 0.004), "a": a, "b": b}

    monkeypatch.setattr(comparebench, "run_ab", fake_ab)
    result = run_compare_bench(CompareBenchSettings(same_sessions=3, slow_sessions=2), tmp_path / "bench")
    assert calls == [("session-01-same", None), ("session-02-slow", 1.1), ("session-03-same", None),
                     ("session-04-slow", 1.1), ("session-05-same", None)]
    assert result["false_alarm"]["flagged"] == 1 and result["false_alarm"]["n"] == 3
    low, high = result["false_alarm"]["wilson95"]
    assert low < 1 / 3 < high and 0 < low
    assert result["detection"]["rate"] == 1.0 and result["median_p50_change_slow"] == pytest.approx(0.09)
    assert (tmp_path / "bench" / "compare_bench.json").exists()
    text = format_compare_bench(result)
    assert "false-alarm rate (A/A, identical builds):  1/3 = 33.3% (Wilson 95%" in text
    assert "detection rate (A vs 1.1x slower forward):  2/2 = 100.0%" in text
    assert "+9.0%" in text and "10 ABBA pairs" in text and "load average" in text
    assert result["pair_noise_same"]["median"] == pytest.approx(0.03 / math.sqrt(2))  # sd of (0.03, 0.0)
    assert "per-pair noise in the A/A sessions (sd of p50 log-ratios): median 2.1%" in text


@pytest.mark.parametrize(("settings", "named"), [
    (CompareBenchSettings(factor=1.0), "factor"),
    (CompareBenchSettings(pairs=2), "pairs"),
    (CompareBenchSettings(same_sessions=0, slow_sessions=0), "same_sessions"),
    (CompareBenchSettings(rate_rps=0), "rate_rps"),
])
def test_bad_settings_are_refused_naming_them(settings: CompareBenchSettings, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings.validate()


def test_the_cli_prints_the_shape_and_budget_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "compare", "--help"])
    text = capsys.readouterr().out
    assert "below the knee" in text and "max_queue_delay_ms" in text and "minutes" in text


@pytest.mark.parametrize(("extra", "named"), [
    (["--rounds", "2"], "--rounds"),
    (["--rate-rps", "0"], "--rate-rps"),
    (["--alpha", "1.5"], "--alpha"),
    (["--fault-b", "slow-inference", "--fault-param-b", "factor=0.5"], "--fault-param-b"),
    (["--fault-param-b", "factor=1.1"], "needs a fault kind"),
])
def test_bench_ab_refuses_bad_options_before_deploying(tmp_path: Path, capsys, extra: list[str], named: str) -> None:
    from harness.cli import main

    assert main(["bench", "ab", "--out", str(tmp_path / "ab"), *extra]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "ab" / "a").exists()
