"""The main job's chaos matrix by what it is pointed at (harness.job.chaosplan): the reference service's preset
matrix, a team's server's faults, and the LLM profile for a generative spec. Plans only: nothing is deployed."""

from __future__ import annotations

from pathlib import Path

from harness.job.chaosplan import chaos_plan, is_generative
from harness.job.presets import JOB_PRESETS, LLM_FAULTS, SERVER_FAULTS
from harness.job.stages import own_spec
from harness.platforms.target import PlatformTarget

TARGETS = Path(__file__).resolve().parents[1] / "experiments" / "targets"


def test_a_generative_spec_runs_the_llm_profile_on_its_own_topology() -> None:
    target = PlatformTarget.resolve("local", spec=TARGETS / "llm.yaml")
    spec = own_spec(target)
    assert is_generative(spec) and spec.topology == "multi-active"
    for name, preset in JOB_PRESETS.items():
        plan, note = chaos_plan(preset, target, None, spec)
        assert [e.name for e in plan.experiments] == list(preset.llm_faults), name  # every name a real experiment
        assert plan.topologies == ["multi-active"], name  # the spec's own: its KV caches and probes were set for it
        assert note.startswith(f"{name} against the generative spec llm (openai-chat) runs the LLM profile: "), note
    assert JOB_PRESETS["smoke"].llm_faults == LLM_FAULTS and len(LLM_FAULTS) == 5


def test_an_llm_profile_on_a_topology_the_preset_names(tmp_path: Path) -> None:
    from dataclasses import replace

    target = PlatformTarget.resolve("local", spec=TARGETS / "llm.yaml")
    preset = replace(JOB_PRESETS["tiny"], llm_topologies=("single", "multi-active"))
    plan, _ = chaos_plan(preset, target, None, own_spec(target))
    assert [e.name for e in plan.experiments] == ["llm-kill-mid-stream"] and plan.topologies == ["single", "multi-active"]


def test_a_server_that_is_not_generative_keeps_the_faults_that_need_nothing_from_it() -> None:
    target = PlatformTarget.resolve("local", spec=TARGETS / "fastapi.yaml")
    spec = own_spec(target)
    assert not is_generative(spec)
    plan, note = chaos_plan(JOB_PRESETS["smoke"], target, None, spec)
    assert [e.name for e in plan.experiments] == list(SERVER_FAULTS)
    assert plan.topologies == list(JOB_PRESETS["smoke"].topologies) and "need nothing from the server" in note


def test_the_reference_service_keeps_the_presets_matrix() -> None:
    preset = JOB_PRESETS["smoke"]
    plan, note = chaos_plan(preset, PlatformTarget(), None, None)
    assert [e.name for e in plan.experiments] == list(preset.faults) and note == preset.matrix_note
