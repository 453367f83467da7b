"""Chaos experiments under load, judged against SLA tiers.

- `experiment`: an experiment file and its ``harness`` extension (fault, spec overlay, expected behaviour);
- `runner`: the one place that calls chaoslib (validate, run, journal; rollbacks always play);
- `activities` / `targets`: Chaos Toolkit activities for the local platform, driven by its state file;
- `kubernetes_activities`: roll-out activities chaostoolkit-kubernetes does not have;
- `session`: one `harness chaos run` (deploy, baseline, inject, measure recovery, tear down, judge);
- `behaviour`, `result`: the platform behaviour seen in events, and the result.json mapping;
- `matrix`: every fault against every topology, one table; `profiles`, `loadgen`: timings and background load.
"""
