"""Performance sweeps, max-sustainable-rate search, capacity planning.

- `harness.sweep.search`: max sustainable rate under a p99 SLO, by search over the rate (injected ``measure``).
- `harness.sweep.capacity`: replicas = ceil(R x (1 + headroom) / per-replica rate), and the linear-scaling check.
- `harness.sweep.planner`: `measure_capacity`, the capacity plan and its check on the local platform.
- `harness.sweep.figures`: figures that may be bounds (a max rate's bracket, ratios of them): "at least X".
- `harness.sweep.grid`: the sweep plan (presets smoke/nightly), its points, the tidy ``sweep.csv``.
- `harness.sweep.points`: one point on a deployed configuration (the backend protocol, pre-check, windows).
- `harness.sweep.maxrate`: `find_max_rate`, a configuration's max sustainable rate (the sweep's and capacity's).
- `harness.sweep.loop`: the sweep loop (`measure_sweep`): time bounds, skip/timeout recording, stability, SIGINT.
- `harness.sweep.summary`: ``sweep_summary.json`` from ``sweep.csv`` (CIs, SLO verdicts, frontier, effects).
- `harness.sweep.accuracy`: fp16/bf16 outputs against fp32 on the same seeded inputs; forward-pass timings.
- `harness.sweep.local`: the local-platform backend (deployments, rate generator, telemetry).
- `harness.sweep.simulated`: a service with a known knee, for tests.
- `harness.sweep.table`: text tables of sweep and capacity results.

The workflows (`run_sweep`, `run_capacity`: settings, CPUs, records) are `harness.workflows.sweep` and
`harness.workflows.capacity`. Nothing here imports torch at module level; submodules are imported where used.
"""
