"""`harness bench loadgen`'s search and table from a fake probe, its settings, and its trivial endpoint.
(The figure itself, N processes against one, is the benchmark's to print: `harness bench loadgen`.)"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from harness import processes
from harness.bench.loadgen import LoadgenSettings, _endpoint_url, _Search, format_loadgen_table
from harness.errors import ConfigError


def _fake_probe(capacity: dict[int, float], flaky: set[tuple[int, float]] = frozenset()):
    seen: list[tuple[int, float, str]] = []

    def probe(count: int, rate: float, tag: str) -> dict:
        seen.append((count, rate, tag))
        kept = rate <= capacity[count] and not ((count, rate) in flaky and tag == "")
        return {"workers": count, "rate_rps": rate, "kept": kept, "lag_p99_ms": 1.0, "overflow": 0, "errors": 0,
                "generator_cpu_percent": 50.0}

    return probe, seen


def test_the_search_brackets_each_count_side_by_side_and_a_spoilt_probe_is_measured_again():
    probe, seen = _fake_probe({1: 3000.0, 4: 9000.0}, flaky={(4, 1500.0)})
    search = _Search(LoadgenSettings(start_rps=1000, growth=1.5, refine=3), (1, 4), probe, lambda _m: None)
    search.climb()
    search.refine()
    # both counts probed at each step until each failed, in alternating order
    assert seen[:4] == [(1, 1000.0, ""), (4, 1000.0, ""), (4, 1500.0, ""), (4, 1500.0, "-again")]
    assert search.lo[1] <= 3000 < search.hi[1] and search.lo[4] <= 9000 < search.hi[4]
    assert search.hi[1] / search.lo[1] < 1.06 and search.hi[4] / search.lo[4] < 1.06  # three bisections of 1.5
    retried = [p for p in search.probes if p.get("retried")]
    assert [(p["workers"], p["rate_rps"], p["kept"]) for p in retried][0] == (4, 1500.0, True)
    assert search.figure(1)["text"] == f"{search.lo[1]:.0f} (not {search.hi[1]:.0f})"


def test_a_count_that_kept_up_to_max_rps_is_a_lower_bound_and_the_table_says_so():
    probe, _ = _fake_probe({1: 2000.0, 2: 1e9})
    search = _Search(LoadgenSettings(start_rps=1000, growth=2, refine=1, max_rps=8000), (1, 2), probe, lambda _m: None)
    search.climb()
    search.refine()
    assert search.figure(2) == {"max_kept_rps": 8000.0, "lowest_not_kept_rps": None, "lower_bound": True,
                                "text": "at least 8000"}
    result = {"workers": 2, "figures": {"1": search.figure(1), "2": search.figure(2)}, "probes": search.probes,
              "ratio": 8000 / search.lo[1], "meets_claim": True, "settings": {"min_ratio": 1.2},
              "generator_cpus": [0, 1], "machine": {}, "elapsed_s": 1.0}
    table = format_loadgen_table(result)
    assert "at least 8000" in table and "2 processes / 1 process: " in table and "yes" in table


@pytest.mark.parametrize("field, value", [("workers", 1), ("workers", 65), ("growth", 1.0), ("probe_s", 0.1),
                                          ("start_rps", 60_000.0), ("min_ratio", -1.0)])
def test_bad_settings_are_one_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        LoadgenSettings(**{field: value}).validate()
    assert info.value.field == field


def test_the_trivial_endpoint_answers_any_request_with_its_one_reply_and_stops_on_sigterm(tmp_path):
    server = processes.spawn(processes.python_argv("harness.bench.trivialserver"), stdout=subprocess.PIPE,
                             log_path=tmp_path / "endpoint.log")
    try:
        url = _endpoint_url(server)
        for path, body in (("/v2/models/m/infer", b'{"inputs": []}'), ("/anything", None)):
            with urllib.request.urlopen(urllib.request.Request(url + path, data=body), timeout=5) as answer:
                assert answer.status == 200 and json.loads(answer.read()) == {"outputs": []}
    finally:
        code = processes.stop(server)
        server.stdout.close()
    assert code == 0
