"""A chaos run against a generative target: the report shows TTFT and ITL over time around the fault
(harness.report.tokens_over_time), rebuilt from the saved requests.csv, result.json and journal.json."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from harness.jsonfile import read_json, write_json
from harness.report.writer import write_report
from harness.request_records import RequestRecord, write_records

from .conftest import T0, write_chaos, write_load

INJECTED = T0 + 10.0  # write_chaos's injection; its outage (and recovery) 2 s later


def token_records() -> list[RequestRecord]:
    """10 requests a second for 30 s: 20 ms TTFT and three 5 ms gaps; failed during the 2 s outage; in the two
    seconds after it a 250 ms TTFT and a 400 ms first gap (a backlog draining)."""
    records = []
    for i in range(300):
        sent, since = T0 + i / 10, i / 10 - 10.0
        if 0 <= since < 2:
            records.append(RequestRecord(sent, sent, 3.0, 0, False, "stream cut", "rate"))
            continue
        slow = 2 <= since < 4
        ttft, gaps = (250.0, (400.0, 5.0, 5.0)) if slow else (20.0, (5.0, 5.0, 5.0))
        records.append(RequestRecord(sent, sent, ttft + sum(gaps), 200, True, "", "rate", ttft_ms=ttft,
                                     tpot_ms=sum(gaps) / 3, output_tokens=4, itl_ms=gaps))
    return records


def saved_chaos(root: Path, tokens: bool = True) -> Path:
    cell = root / "chaos" / "pod-kill" / "single"
    write_chaos(cell)
    if tokens:
        write_records(cell / "requests.csv", token_records(), RequestRecord)
    rollback = datetime.fromtimestamp(INJECTED + 1.0, tz=timezone.utc).isoformat()
    write_json(cell / "journal.json", {"status": "completed", "run": [], "rollbacks": [
        {"activity": {"name": "clear-every-fault"}, "status": "succeeded", "start": rollback, "end": rollback}]})
    return root


def test_the_chaos_section_shows_ttft_and_itl_by_phase_and_as_a_chart(tmp_path: Path) -> None:
    paths = write_report(saved_chaos(tmp_path))
    (section,) = [s for s in read_json(paths["summary"])["sections"] if s["kind"] == "chaos"]
    phases = {p["name"]: p for p in section["summary"]["token_phases"]}
    assert list(phases) == ["before injection", "from injection", "from rollback", "from recovery"]
    before, fault, rollback, after = phases.values()
    assert (before["start_s"], before["end_s"], before["requests"], before["failed"], before["gaps"]) == (-10.0, 0.0, 100, 0, 300)
    assert (before["ttft_p99_ms"], before["itl_p99_ms"]) == (20.0, 5.0)
    assert (fault["end_s"], fault["requests"], fault["failed"], fault["ttft_p50_ms"], fault["gaps"]) == (1.0, 10, 10, None, 0)
    assert (rollback["start_s"], rollback["end_s"], rollback["requests"], rollback["failed"]) == (1.0, 2.0, 10, 10)
    assert (after["requests"], after["failed"], after["gaps"]) == (180, 0, 540)
    assert (after["ttft_p50_ms"], after["ttft_p99_ms"], after["itl_p50_ms"], after["itl_p99_ms"]) == (20.0, 250.0, 5.0, 400.0)
    assert (after["worst_itl_bin_s"], after["worst_itl_p99_ms"], after["worst_ttft_bin_s"]) == (2.0, 400.0, 2.0)
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "**TTFT and inter-token latency by phase (exact; worst one-second bin of each)**" in markdown
    assert "| from recovery | 2.00 | 19.95 | 180 | 0 | 20.0 | 250.0 | 540 | 5.00 | 400.0 | 250.0 ms at +2 s | 400.0 ms at +2 s |" in markdown
    assert "### harness.measure.token_timeline" in markdown  # its definitions quoted
    html = paths["html"].read_text(encoding="utf-8")
    assert '<img alt="TTFT and inter-token latency per 1 s around the fault (p50, p99) with the requests sent; marks: ' \
           'injection, rollback, recovery" src="data:image/png;base64,' in html
    assert section["charts"] == 3  # the prober's timeline, this one and the telemetry


def test_a_chaos_run_without_tokens_has_no_token_parts(tmp_path: Path) -> None:
    paths = write_report(saved_chaos(tmp_path, tokens=False))
    (section,) = [s for s in read_json(paths["summary"])["sections"] if s["kind"] == "chaos"]
    assert "token_phases" not in section["summary"]
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "TTFT and inter-token latency by phase" not in markdown and "harness.measure.token_timeline" not in markdown


def test_a_generative_loads_section_charts_ttft_and_itl_over_the_load(tmp_path: Path) -> None:
    for name, tokens in (("llm", True), ("plain", False)):
        write_load(tmp_path / name / "load", seed=1)
        if tokens:
            write_records(tmp_path / name / "load" / "requests.csv", token_records(), RequestRecord)
        paths = write_report(tmp_path / name)
        (section,) = [s for s in read_json(paths["summary"])["sections"] if s["kind"] == "load"]
        charted = "TTFT and inter-token latency per 1 s over the load (p50, p99)" in paths["html"].read_text(encoding="utf-8")
        assert (charted, section["charts"]) == ((True, 3) if tokens else (False, 2)), name
