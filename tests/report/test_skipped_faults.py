"""A fault skipped because the system under test cannot take it (a command or endpoint target) is reported
as skipped with its reason: neither a failure of the report nor a figure it does not have."""

from __future__ import annotations

from harness.chaos.matrix import MatrixTable
from harness.report.chaos_sections import chaos_section, matrix_section

REASON = ("skipped on a command target: inject_fault needs the reference service's fault hooks, which a command "
          "target does not have")


def test_a_skipped_run_is_its_reason_not_a_failure(tmp_path):
    result = {"experiment": "hang", "fault": "hang", "topology": "single", "outcome": "skipped", "reasons": [REASON],
              "ttr_s": None, "outage_s": None}
    section = chaos_section(tmp_path, result, tmp_path)
    assert not section.failed and not section.inconclusive
    assert section.paragraphs == [f"Fault hang was not run: {REASON}."] and section.findings == [REASON]


def test_skipped_cells_of_a_matrix_are_counted_apart(tmp_path):
    table = MatrixTable(topologies=["single"], rows=[
        {"fault": "pod-kill", "topology": "single", "outcome": "met", "tier": "single-point", "tier_met": True},
        {"fault": "hang", "topology": "single", "outcome": "skipped", "reason": REASON, "tier": "single-point"},
    ])
    table.write(tmp_path)
    section = matrix_section(tmp_path, tmp_path)
    assert not section.failed and section.summary["failed_cells"] == 0 and section.summary["met_cells"] == 1
    assert section.findings == [f"hang on single: {REASON}"]
    assert section.paragraphs[0].startswith("2 cells: 1 met, 0 not met, 0 inconclusive, 1 skipped.")
    assert f"| hang | {REASON} |" in table.markdown()
