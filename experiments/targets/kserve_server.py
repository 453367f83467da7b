"""KServe's own Python model server (``kserve.ModelServer``) serving a tiny model made in code.

Runs from its own virtual environment (kserve's pins clash with the harness's; ``make servers`` makes it):

    .venvs/kserve/bin/python kserve_server.py --http_port 8080 --enable_grpc false

It speaks the Open Inference Protocol v2 as any KServe predictor does: ``GET /v2/health/live``,
``GET /v2/health/ready``, ``GET /v2/models/tiny-linear`` (metadata: one FP32 input ``features`` of
shape ``[-1, 4]``, from which the harness builds its requests) and ``POST /v2/models/tiny-linear/infer``.
The "model" is a 4 x 2 linear layer with weights from a fixed seed and a softmax (numpy, no download).
Every flag is KServe's own (``kserve.model_server.parser``): ``--http_port``, ``--enable_grpc``,
``--grpc_port``, ``--workers``, ``--model_name``...; kserve reads them when it is imported.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server

FEATURES, CLASSES, SEED = 4, 2, 17


class TinyLinear(Model):
    """softmax(x @ W + b) for rows of 4 features; W and b from a fixed seed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.weights: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def load(self) -> bool:
        rng = np.random.default_rng(SEED)
        self.weights = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
        self.bias = rng.standard_normal(CLASSES).astype(np.float32)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:  # the v2 metadata's inputs
        return [{"name": "features", "datatype": "FP32", "shape": [-1, FEATURES]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, CLASSES]}]

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        rows = payload.inputs[0].as_numpy().astype(np.float32).reshape(-1, FEATURES)
        logits = rows @ self.weights + self.bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32",
                             data=probabilities.flatten().tolist())
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.splitlines()[0])
    parser.set_defaults(model_name="tiny-linear")
    args, _ = parser.parse_known_args()
    model = TinyLinear(args.model_name)
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()
