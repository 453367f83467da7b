"""Load generation: Locust profiles (own process), rate-driven open-loop load, the client-side prober.

Public entry points (import them from their modules; this package imports nothing, so that the
locustfile, which Locust loads in its own process, pulls in no more than it needs):

- `harness.load.profiles`: `LoadProfile`, `build_profile`, `target_users`, `PRESETS`, `get_preset`.
- `harness.load.locust_runner`: `run_locust(host, profile, out_dir, cpus=...) -> LoadResult`.
- `harness.load.rate`: `run_rate(host, out_dir, rate_rps=..., duration_s=...) -> RateResult`.
- `harness.load.closed_loop`: N closed-loop aiohttp clients in windows (the service benchmark, the sweep's
  concurrency mode), run as ``python -m harness.load.closed_loop``.
- `harness.load.prober`: `Prober(host, timeline_path, interval_s=0.05)` (start/stop, context manager).
- `harness.load.session`: `run_session(deployment, profile, out_dir)` (Locust + prober + telemetry ->
  result.json); where it runs: `harness.cpus.plan_cpus`.
- `harness.load.result`: `LoadResult`; `harness.load.cpu_sampler`: the ``generator_saturated`` rule.
- `harness.load.protocols`: what every generator and the prober send and how they read the answer
  (`ProtocolSettings`, `build_adapter`: oip-v2, openai-chat, openai-completions, http-json).

``harness/load/locustfile.py`` imports Locust and must only ever be loaded by a Locust process.
"""
