"""Which targets the LLM experiments (experiments/llm/) run on: a server that speaks the OpenAI-compatible API,
with the harness's fault hooks where they need them (``target.fault_hooks``, as the reference generative service)."""

from __future__ import annotations

import pytest

from harness.chaos.experiment import load_experiment
from harness.chaos.fit import target_fit, target_kinds
from harness.config import load_spec

from .helpers import ROOT

LLM = ROOT / "experiments" / "llm"
HOOKED = ("llm-healthy-but-broken", "llm-healthy-but-broken-fixed")


@pytest.mark.parametrize("name, kinds", [
    ("llm-long-context", ["command", "endpoint"]),
    ("llm-long-context-oom", ["command", "endpoint"]),
    ("llm-kv-pressure", ["command", "endpoint"]),
    ("llm-burst-liveness", ["command", "endpoint"]),
    ("llm-kill-mid-stream", ["command"]),
    ("llm-healthy-but-broken", []),  # the hang hook and an OpenAI request: only a command target with the hooks
])
def test_the_llm_experiments_need_an_openai_server_and_say_why_not_on_the_reference_service(name, kinds):
    experiment = load_experiment(LLM / f"{name}.json")
    assert target_kinds(experiment)[0] == kinds
    assert "sends OpenAI-compatible requests" in target_fit(experiment, "reference")


@pytest.mark.parametrize("name", HOOKED)
def test_a_command_target_with_fault_hooks_takes_the_hook_experiments_and_one_without_skips_them(name):
    experiment = load_experiment(LLM / f"{name}.json")
    assert target_fit(experiment, "command", hooks=True) is None
    assert "needs the reference service's fault hooks" in target_fit(experiment, "command")
    assert target_fit(load_experiment(ROOT / "experiments" / "oom-kill.json"), "command", hooks=True) is None


def test_the_llm_specs_say_their_server_has_the_hooks_and_litservs_does_not():
    for name, hooks in (("llm", True), ("llm-unguarded", True), ("litserve", False)):
        spec = load_spec(str(ROOT / "experiments" / "targets" / f"{name}.yaml"))
        assert spec.target.fault_hooks is hooks and spec.target.kind == "command"
