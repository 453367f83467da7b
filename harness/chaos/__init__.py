"""Chaos experiments under load, judged against SLA tiers.

- `experiment`: an experiment file and its ``harness`` extension (fault, spec overlay, expected behaviour);
- `toolkit`: the one place that calls chaoslib (Chaos Toolkit) (validate, run, journal; rollbacks always play);
- `activities` / `targets`: Chaos Toolkit activities for the local platform, driven by its state file;
- `kubernetes_activities`: roll-out activities chaostoolkit-kubernetes does not have;
- `settings`: what one chaos run is (experiment, topology, preset, SLA, target) and its CPU split;
- `behaviour`, `result`: the platform behaviour seen in events, and the result.json mapping;
- `matrix`: the fault x topology plan and its table; `presets`, `loadgen`: timings (by preset) and background load.

The runs themselves (`ChaosRun`, `run_matrix`) compose these with the platforms, load and measure
packages, and write run records: they live in `harness.workflows`.
"""
