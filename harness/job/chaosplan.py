"""Which chaos matrix the main job's chaos stage runs, by what it is pointed at, and the line that says so.

- **The reference service** (no ``--spec``): the preset's faults on the preset's topologies (smoke's
  reduced matrix, `harness.job.presets.SMOKE_MATRIX_NOTE`; nightly every experiment).
- **A team's own server** (``--spec`` with a command or endpoint target, ``--endpoint``): the preset's
  ``server_faults``, the faults that need nothing from the server, on the preset's topologies.
- **A generative server, the LLM profile** (a spec of its own whose target speaks an OpenAI protocol,
  ``openai-chat`` or ``openai-completions``: the reference generative service's
  ``experiments/targets/llm.yaml``, LitServe's, a vLLM): the LLM experiments of ``experiments/llm/``
  (the preset's ``llm_faults``: a long context, KV-cache pressure, a wedged engine behind green
  probes, a burst past the liveness probe, a kill mid-stream) on the spec's own topology (the size its
  KV caches and probes were set for), each skipped, saying why, where its target cannot take it (a
  server without the harness's fault hooks: `harness.chaos.fit`). Their chaos runs' reports show TTFT
  and ITL over time around each fault (`harness.report.tokens_over_time`).
- **Kubernetes**: the experiments of ``experiments/kubernetes/`` on the applied Deployment.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LLM_EXPERIMENTS", "GENERATIVE_PROTOCOLS", "is_generative", "chaos_plan"]

LLM_EXPERIMENTS = "llm"  # the LLM experiments' folder, under the experiments folder
GENERATIVE_PROTOCOLS = ("openai-chat", "openai-completions")


def is_generative(spec: Any) -> bool:
    """True when ``spec`` (a `harness.config.ServiceSpec`) has a target speaking an OpenAI protocol."""
    target = getattr(spec, "target", None)
    protocol = getattr(target, "protocol", None)
    return getattr(protocol, "protocol", None) in GENERATIVE_PROTOCOLS


def chaos_plan(preset: Any, target: Any, sla: Any = None, spec: Any = None) -> tuple[Any, str]:
    """Return the `harness.chaos.matrix.MatrixPlan` of the job's chaos stage and the line that says what it runs,
    for a `JobPreset`, a `PlatformTarget` and, given a spec of the user's own, that ``spec`` (see the module
    docs); raise ConfigError naming a fault or topology the preset names and the experiments lack."""
    from harness.chaos.matrix import MatrixPlan, default_experiments_dir

    kubernetes = target.is_kubernetes  # the applied Deployment's topology, experiments/kubernetes/
    own = target.own_spec  # never on Kubernetes
    llm = own and is_generative(spec)
    if llm:
        faults = preset.llm_faults
        topologies = preset.llm_topologies or (spec.topology,)
    else:
        faults = preset.server_faults if own else preset.faults
        topologies = preset.topologies
    plan = MatrixPlan.from_args(
        faults=",".join(faults) if faults else None, topologies=None if kubernetes else ",".join(topologies),
        experiments_dir=default_experiments_dir() / LLM_EXPERIMENTS if llm else None, preset=preset.chaos_preset,
        spec_file=target.spec_path if own else None, retry=False, tier=None, target=target, sla=sla,
    )
    names = ", ".join(e.name for e in plan.experiments)
    if kubernetes:
        return plan, (f"{preset.name} on Kubernetes runs {len(plan.experiments)} experiment(s) of experiments/kubernetes/ "
                      f"({names}) on the applied {plan.topologies[0]} Deployment")
    if llm:
        return plan, (f"{preset.name} against the generative spec {spec.name} ({spec.target.protocol.protocol}) runs the "
                      f"LLM profile: {names} on {', '.join(plan.topologies)} (experiments/{LLM_EXPERIMENTS}/; what its "
                      f"target cannot take is skipped, saying why); each chaos run reports TTFT and ITL around its fault")
    if own:
        return plan, (f"{preset.name} against the given spec runs {names} on {', '.join(plan.topologies)} (the faults that "
                      f"need nothing from the server: a cell its target cannot take is skipped, saying why)")
    return plan, preset.matrix_note
