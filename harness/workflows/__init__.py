"""One home per workflow: what the CLI, the main job and the pytest scenarios all call.

Each module composes the layers below it (platforms, load, chaos, measure, sweep) into one
workflow and writes its run record (`harness.results`); the entry points only parse their options
and call down.

- `harness.workflows.load`: `run_load`, load with the prober and telemetry, in rounds or on a given deployment;
- `harness.workflows.sweep`: `run_sweep`, precision x batch size x load, max rates under the SLO;
- `harness.workflows.capacity`: `run_capacity`, the replicas for a target rate and their check;
- `harness.workflows.chaos`: `ChaosRun`, one chaos run (deploy, load, inject, recover, judge, record);
- `harness.workflows.matrix`: `run_matrix`, every fault against every topology, one table.

- `harness.workflows.context`: `RunContext`, what one run shares with the workflows it calls.

Each takes typed settings (`LoadSettings`, `SweepSettings`, `CapacitySettings`, `ChaosRunSettings`,
`MatrixPlan`) and the run's context (`harness.workflows.context.RunContext`: the output directory,
absolute, the platform, the spec, the SLO, the ``progress`` callback and, where it is a part of a
larger run, that run's record as ``parent``), built once by the entry point. A chaos run still
records itself as a run of its own (its matrix and the main job record the matrix as their part).
"""
