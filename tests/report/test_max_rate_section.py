"""The report of `harness sweep --spec`: ``max_rate.json`` becomes a section with the answer and every probe."""

from __future__ import annotations

from harness.jsonfile import write_json
from harness.report.section import frame_of
from harness.report.sections import collect_sections


def _probe(rate: float, verdict: str, share: float) -> dict:
    return {"rate_rps": rate, "verdict": verdict, "reason": "", "measurement": {
        "rate_rps": rate, "throughput_rps": rate, "p99_ms": 90.0, "error_rate": 0.0, "good_share": share,
        "goodput_rps": rate * share, "ttft_p99_ms": 80.0, "itl_p99_ms": 9.5}}


def test_a_goodput_search_is_reported_with_its_answer_objectives_and_probes(tmp_path):
    write_json(tmp_path / "max_rate.json", {
        "spec": "litserve", "protocol": "openai-chat", "generative": True, "max_rate_rps": 92.0,
        "max_rate_text": "92.0 rps", "goodput_rps": 88.0, "good_share": 0.981,
        "objectives": {"ttft_ms": 100.0, "tpot_ms": None, "e2e_ms": 500.0, "itl_ms": 50.0, "min_good_share": 0.9},
        "search": {"converged": True, "stop_reason": "converged", "detail": "max rate in [92.00, 95.62) rps",
                   "probes": [_probe(46.0, "pass", 1.0), _probe(92.0, "pass", 0.981), _probe(95.6, "fail", 0.5)]}})
    (section,) = collect_sections(tmp_path)
    assert section.kind == "max-rate" and section.title == "Max goodput rate" and not section.findings
    assert section.paragraphs[0].startswith("litserve (openai-chat): 92.0 rps with goodput 88.0 good requests/s "
                                            "(98.1% good), a rate passing when at least 90% of its requests are good "
                                            "under TTFT <= 100.0 ms, E2E <= 500.0 ms, ITL <= 50.0 ms.")
    table = frame_of(section)
    assert list(table["verdict"]) == ["pass", "pass", "fail"] and list(table["good share"]) == [1.0, 0.981, 0.5]


def test_a_search_the_budget_ended_is_a_lower_bound(tmp_path):
    write_json(tmp_path / "max_rate.json", {
        "spec": "api", "protocol": "oip-v2", "generative": False, "max_rate_rps": 40.0, "max_rate_text": "at least 40.0 rps",
        "objectives": {"p99_ms": 500.0, "max_error_rate": 0.01},
        "search": {"converged": False, "stop_reason": "timeout", "detail": "search budget 60 s spent", "probes": []}})
    (section,) = collect_sections(tmp_path)
    assert section.title == "Max rate" and "at least 40.0 rps under p99 <= 500.0 ms" in section.paragraphs[0]
    assert section.findings == ["the max rate is a lower bound: search budget 60 s spent"]
