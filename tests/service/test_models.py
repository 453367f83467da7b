"""The torch models agree with the torch-free registry: names, inputs, output shapes; each precision runs."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from harness.config import resolve_service_config
from harness.modelnames import MODEL_NAMES
from harness.service.registry import MODELS, example_inputs


def test_every_registry_model_has_a_definition_and_no_more() -> None:
    from harness.service.models import model_names

    assert set(model_names()) == set(MODEL_NAMES)


def test_the_registry_holds_the_ground_floor_names_in_order() -> None:
    assert tuple(MODELS) == MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_signature_matches_the_registry(name: str) -> None:
    import torch

    from harness.service.models import build_model

    signature = MODELS[name]
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_model(name)
        parameters = list(inspect.signature(model.forward).parameters)
        assert parameters == [spec.name for spec in signature.inputs]
        inputs = {
            spec.name: torch.zeros((3, *spec.shape), dtype=torch.int64 if spec.datatype == "INT64" else torch.float32)
            for spec in signature.inputs
        }
        output = model(**inputs)
    assert tuple(output.shape) == (3, *signature.outputs[0].shape)
    assert len(signature.outputs) == 1


def test_unknown_model_is_refused_by_name() -> None:
    from harness.service.models import build_model

    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build_model("nope")


@pytest.mark.parametrize("model", ["tiny-mlp", "text-encoder"])
def test_each_precision_runs_on_cpu_and_agrees_with_fp32(model: str, weights_dir: Path) -> None:
    from harness.service.model_runner import ModelRunner

    inputs = example_inputs(model, batch=2, seed=5)
    outputs = {}
    for precision in ("fp32", "bf16", "fp16"):  # fp16 on CPU is very slow: a batch of 2 only
        config = resolve_service_config(
            {"model": model, "precision": precision, "device": "cpu", "weights_dir": str(weights_dir), "warmup_iters": 1, "max_batch_size": 2},
            env={},
        )
        runner = ModelRunner(config)
        runner.load()
        result = runner.run_batch(inputs)[MODELS[model].outputs[0].name]
        assert result.dtype == np.float32 and result.shape == (2, *MODELS[model].outputs[0].shape)
        assert np.isfinite(result).all()
        outputs[precision] = result
    scale = np.abs(outputs["fp32"]).max() + 1e-6
    assert np.abs(outputs["bf16"] - outputs["fp32"]).max() / scale < 0.1
    assert np.abs(outputs["fp16"] - outputs["fp32"]).max() / scale < 0.02


def test_cuda_requested_without_cuda_is_a_clear_error(weights_dir: Path) -> None:
    import torch

    from harness.errors import ConfigError
    from harness.service.model_runner import ModelRunner

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the error path cannot be exercised")
    config = resolve_service_config({"model": "tiny-mlp", "device": "cuda", "weights_dir": str(weights_dir)}, env={})
    with pytest.raises(ConfigError, match="device='cuda': CUDA is not available"):
        ModelRunner(config).load()


@pytest.mark.gpu
def test_each_precision_runs_on_cuda(weights_dir: Path) -> None:
    import torch

    from harness.service.model_runner import ModelRunner

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    for precision in ("fp32", "fp16", "bf16"):
        config = resolve_service_config(
            {"model": "ranker-mlp", "precision": precision, "device": "cuda", "weights_dir": str(weights_dir)}, env={}
        )
        runner = ModelRunner(config)
        runner.load()
        assert runner.device_name == "cuda"
        result = runner.run_batch(example_inputs("ranker-mlp", 32))["scores"]
        assert result.shape == (32, 16) and np.isfinite(result).all()
