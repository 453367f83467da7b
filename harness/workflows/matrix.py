"""The fault x topology matrix, run: every cell a `harness.workflows.chaos.ChaosRun`, one table.

The plan and the table are `harness.chaos.matrix`; the table is written after every cell, so an
interrupted matrix still leaves the cells it finished.
"""

from __future__ import annotations

import time

from harness.chaos.matrix import MatrixPlan, MatrixTable, cell_text, matrix_row
from harness.chaos.settings import ChaosRunSettings
from harness.errors import HarnessError
from harness.workflows.chaos import ChaosRun
from harness.workflows.context import RunContext

__all__ = ["run_matrix"]


def _quiet(_line: str) -> None:
    pass


def run_matrix(plan: MatrixPlan, context: RunContext) -> MatrixTable:
    """Run every cell of ``plan`` in turn; return the table (also written to ``context.out_dir``, each cell
    in ``<experiment>/<topology>/`` below it).

    A cell the harness cannot run is recorded with its error and the matrix goes on; an interrupt
    ends the matrix after that cell's cleanup.
    """
    say = context.say
    table = MatrixTable(topologies=list(plan.topologies), retry=plan.retry)
    cells = [(e, t) for e in plan.experiments for t in plan.topologies if t in e.extension.topologies]
    total = len(cells)
    for experiment, topology in cells:
        index = len(table.rows) + 1
        say(f"[{index}/{total}] {experiment.name} x {topology}")
        cell = context.part(f"{experiment.name}/{topology}", progress=_quiet)  # one line per cell, below
        settings = ChaosRunSettings(
            experiment=experiment, topology=topology, preset=plan.preset,
            spec_data=plan.spec_data, tier=plan.tier, retry=plan.retry, target=plan.target, sla=plan.sla,
        )
        started = time.monotonic()
        try:
            result = ChaosRun(settings, cell).execute()
        except HarnessError as exc:
            result = {"fault": experiment.fault, "topology": topology, "errors": [str(exc)]}
        row = matrix_row({"fault": experiment.fault, "topology": topology, **result}, time.monotonic() - started, plan.retry)
        table.rows.append(row)
        table.write(context.out_dir)
        say(f"[{index}/{total}] {experiment.name} x {topology}: {cell_text(row)} ({row['cell_s']:.0f} s)")
        if result.get("aborted"):
            table.aborted = True
            table.write(context.out_dir)
            return table
    return table
