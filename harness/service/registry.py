"""Signatures of the reference models (names, input and output tensors), importable without torch.

Load generators and probers use these to build valid requests; the names themselves live at the
bottom of the layering (`harness.modelnames`, for config validation), the torch definitions in
`harness.service.models`, and a test keeps the three in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.modelnames import MODEL_NAMES

__all__ = ["TensorSpec", "ModelSignature", "MODELS", "get_signature", "example_inputs", "example_request"]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model's signature; ``shape`` is per sample (the batch dimension is added in front)."""

    name: str
    datatype: str  # Open Inference Protocol v2 datatype: "FP32", "INT64", ...
    shape: tuple[int, ...]
    low: float = 0.0  # value range that example inputs are drawn from
    high: float = 1.0


@dataclass(frozen=True)
class ModelSignature:
    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str = "pytorch_torchscript"
    version: str = "1"


MODELS: dict[str, ModelSignature] = {
    "ranker-mlp": ModelSignature(
        name="ranker-mlp",
        description="Ranking MLP 512-4096-4096-4096-4096-16 over dense features (a recommender's scoring tower)",
        inputs=(TensorSpec("features", "FP32", (512,), -1.0, 1.0),),
        outputs=(TensorSpec("scores", "FP32", (16,)),),
    ),
    "text-encoder": ModelSignature(
        name="text-encoder",
        description="4-layer transformer encoder (d=256, 4 heads, 32 tokens) classifying token ids into 16 classes",
        inputs=(TensorSpec("input_ids", "INT64", (32,), 0, 8000),),
        outputs=(TensorSpec("logits", "FP32", (16,)),),
    ),
    "tiny-mlp": ModelSignature(
        name="tiny-mlp",
        description="Tiny MLP 32-64-64-4 for fast tests and smoke runs (loads in milliseconds; not a benchmark model)",
        inputs=(TensorSpec("features", "FP32", (32,), -1.0, 1.0),),
        outputs=(TensorSpec("scores", "FP32", (4,)),),
    ),
}


_NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def get_signature(model: str) -> ModelSignature:
    """Return the signature of a reference model; raise KeyError naming the known models."""
    try:
        return MODELS[model]
    except KeyError:
        raise KeyError(f"unknown model {model!r}; known: {', '.join(MODEL_NAMES)}") from None


def example_inputs(model: str, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Return valid random inputs for ``model`` with a leading batch dimension, keyed by input name."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in get_signature(model).inputs:
        shape = (batch, *spec.shape)
        if spec.datatype.startswith("INT"):
            arrays[spec.name] = rng.integers(int(spec.low), int(spec.high), size=shape).astype(_NUMPY_TYPES[spec.datatype])
        else:
            arrays[spec.name] = rng.uniform(spec.low, spec.high, size=shape).astype(_NUMPY_TYPES[spec.datatype])
    return arrays


def example_request(model: str, batch: int = 1, seed: int = 0) -> dict:
    """Return an Open Inference Protocol v2 JSON request body (as a dict) with valid random inputs."""
    inputs = []
    signature = get_signature(model)
    arrays = example_inputs(model, batch, seed)
    for spec in signature.inputs:
        array = arrays[spec.name]
        inputs.append(
            {"name": spec.name, "shape": list(array.shape), "datatype": spec.datatype, "data": array.ravel().tolist()}
        )
    return {"inputs": inputs}
