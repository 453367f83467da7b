"""The pytest scenario library: what ``pytest scenarios/`` (the nightly suite) is written with.

Plain classes the pytest plugin (`harness.pytest_plugin`) hands to scenario tests as fixtures,
testable without pytest; every measurement goes through the workflows the CLI and the main job call
(`harness.workflows`), into the main job's layout, so a scenario run and ``harness run`` are each
other's baselines.

- `harness.scenarios.session`: `ScenarioSession` (options read once, one run directory, its parts,
  the report), the expectations (`ScenarioFailed`, `NotApplicable`, `Inconclusive`, `expect_none`);
- `harness.scenarios.chaos`: fault cells (`ChaosScenarios`, `resilience_cases`) and the matrix table;
- `harness.scenarios.perf`: deployments, load runs, the sweep and the capacity plan with their expectations.

Progress is logged on the ``harness.scenarios`` logger.
"""
