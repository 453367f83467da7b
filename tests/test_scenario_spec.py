"""The scenarios against a team's own server (--harness-spec): the main job's chaos cells against it (the LLM
profile for an OpenAI-compatible one), the sweep and capacity not applicable with the job's reason, a bad spec
named. Plans and options only: nothing is deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.job.presets import LLM_FAULTS, SERVER_FAULTS, SMOKE_TOPOLOGIES
from harness.job.stages import OWN_SPEC_SKIPS
from harness.scenarios.chaos import ChaosScenario, resilience_cases
from harness.scenarios.perf import CapacityScenario, PerfScenario
from harness.scenarios.session import NotApplicable, ScenarioSession, validate_options

TARGETS = Path(__file__).resolve().parents[1] / "experiments" / "targets"


def test_an_openai_compatible_spec_gets_the_llm_profiles_cells() -> None:
    cases = resilience_cases("smoke", spec=TARGETS / "llm.yaml")
    assert [(c.experiment, c.topology) for c in cases] == [(f, "multi-active") for f in LLM_FAULTS]
    assert [c.experiment for c in resilience_cases("nightly", spec=TARGETS / "llm.yaml")][-1] == "llm-healthy-but-broken-fixed"


def test_a_server_that_is_not_generative_gets_the_faults_that_need_nothing_from_it() -> None:
    cases = resilience_cases("smoke", spec=TARGETS / "fastapi.yaml")
    assert [(c.experiment, c.topology) for c in cases] == [
        (f, t) for f in SERVER_FAULTS for t in SMOKE_TOPOLOGIES if f != "network-abort" or t == "single"]


def test_a_session_with_a_spec_deploys_it_in_each_llm_cell_and_skips_sweep_and_capacity(tmp_path: Path) -> None:
    session = ScenarioSession(validate_options(reports_root=tmp_path / "reports", spec=TARGETS / "llm.yaml"),
                              inspect_torch=False)
    cell = ChaosScenario(session, "llm-kv-pressure", "multi-active")  # found in experiments/llm/
    assert cell.experiment.path.parent.name == "llm"
    spec = cell.spec
    assert spec.name == "llm" and spec.target.protocol.protocol == "openai-chat" and spec.replica_count == 2
    with pytest.raises(NotApplicable, match="sweep with --harness-spec: " + OWN_SPEC_SKIPS["sweep"][:40]):
        PerfScenario(session).sweep()
    with pytest.raises(NotApplicable, match="capacity with --harness-spec: "):
        CapacityScenario(session).plan_and_check()


def test_a_bad_spec_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--harness-spec=.*absent.yaml.: cannot read"):
        validate_options(spec=tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntopology: triple\n")
    with pytest.raises(ConfigError, match="topology"):
        validate_options(spec=bad)
