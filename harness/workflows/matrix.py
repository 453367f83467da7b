"""The fault x topology matrix, run: every cell a `harness.workflows.chaos.ChaosRun`, one table.

The plan and the table are `harness.chaos.matrix`; the table is written after every cell, so an
interrupted matrix still leaves the cells it finished.
"""

from __future__ import annotations

import time
from typing import Callable

from harness.chaos.matrix import MatrixPlan, MatrixTable, cell_text, matrix_row
from harness.chaos.settings import ChaosRunSettings
from harness.errors import HarnessError
from harness.workflows.chaos import ChaosRun

__all__ = ["run_matrix"]


def run_matrix(plan: MatrixPlan, *, progress: Callable[[str], None] | None = None) -> MatrixTable:
    """Run every cell of ``plan`` in turn; return the table (also written to ``plan.out_dir``).

    A cell the harness cannot run is recorded with its error and the matrix goes on; an interrupt
    ends the matrix after that cell's cleanup.
    """
    say = progress or (lambda message: None)
    table = MatrixTable(topologies=list(plan.topologies), retry=plan.retry)
    cells = [(e, t) for e in plan.experiments for t in plan.topologies if t in e.extension.topologies]
    total = len(cells)
    for experiment, topology in cells:
        index = len(table.rows) + 1
        say(f"[{index}/{total}] {experiment.name} x {topology}")
        cell_dir = plan.out_dir / experiment.name / topology
        settings = ChaosRunSettings(
            experiment=experiment, topology=topology, preset=plan.preset, out_dir=cell_dir,
            spec_data=plan.spec_data, tier=plan.tier, retry=plan.retry, target=plan.target, sla=plan.sla,
        )
        started = time.monotonic()
        try:
            result = ChaosRun(settings).execute()
        except HarnessError as exc:
            result = {"fault": experiment.fault, "topology": topology, "errors": [str(exc)]}
        row = matrix_row({"fault": experiment.fault, "topology": topology, **result}, time.monotonic() - started, plan.retry)
        table.rows.append(row)
        table.write(plan.out_dir)
        say(f"[{index}/{total}] {experiment.name} x {topology}: {cell_text(row)} ({row['cell_s']:.0f} s)")
        if result.get("aborted"):
            table.aborted = True
            table.write(plan.out_dir)
            return table
    return table
