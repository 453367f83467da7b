"""One home per workflow: what the CLI, the main job and the pytest scenarios all call.

Each module composes the layers below it (platforms, load, chaos, measure, sweep) into one
workflow and writes its run record (`harness.results`); the entry points only parse their options
and call down.

- `harness.workflows.chaos`: `ChaosRun`, one chaos run (deploy, load, inject, recover, judge, record);
- `harness.workflows.matrix`: `run_matrix`, every fault against every topology, one table.
"""
