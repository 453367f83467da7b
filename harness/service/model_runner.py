"""The model runner: loads one reference model and runs batched forward passes on it.

Every method runs on the service's single model worker thread (the batcher's executor), so torch is
imported there, after the HTTP port is listening, and the model is only ever touched by one thread.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from harness.config import ServiceConfig
from harness.errors import ConfigError
from harness.extras import require_extra
from harness.service.registry import ModelSignature, example_inputs, get_signature

__all__ = ["ModelRunner", "LoadCancelled", "TORCH_DTYPES"]

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class LoadCancelled(Exception):
    """Loading was abandoned because the service is shutting down."""


class ModelRunner:
    """One model on one device at one precision; `load` first, then `run_batch`."""

    def __init__(self, config: ServiceConfig, cancel: threading.Event | None = None) -> None:
        self.config = config
        self._cancel = cancel or threading.Event()
        self.signature: ModelSignature = get_signature(config.model)
        self.device_name: str | None = None
        self.manifest: dict[str, Any] | None = None
        self._torch: Any = None
        self._module: Any = None
        self._dtype: Any = None
        self._device: Any = None

    def load(self) -> None:
        """Import torch, load the verified weights, move them to device/precision and warm up.

        Raises ModelIntegrityError for bad weights and ConfigError for an unusable device.
        """
        # the simulated slow load (a stand-in for a model download or compile) ends early on shutdown
        if self._cancel.wait(self.config.startup_delay_s):
            raise LoadCancelled("model load cancelled: the service is shutting down")
        require_extra("service", "loading a reference model")
        import torch

        from harness.service.weights import load_model

        self._torch = torch
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        self._device = torch.device(self._pick_device(torch))
        self.device_name = str(self._device)
        self._dtype = getattr(torch, TORCH_DTYPES[self.config.precision])
        module, self.manifest = load_model(self.config.model, self.config.seed, self.config.weights_dir)
        self._module = module.to(device=self._device, dtype=self._dtype).eval()
        self._warm_up()

    def _pick_device(self, torch: Any) -> str:
        if self.config.device == "cpu":
            return "cpu"
        if torch.cuda.is_available():
            return "cuda"
        if self.config.device == "cuda":
            raise ConfigError("device", "cuda", "CUDA is not available on this machine (torch.cuda.is_available() is False)")
        return "cpu"

    def _warm_up(self) -> None:
        # alternate the smallest and the largest batch so both kernels' first-call costs are paid here
        for index in range(self.config.warmup_iters):
            batch = 1 if index % 2 == 0 else self.config.max_batch_size
            self.run_batch(example_inputs(self.config.model, batch, seed=index))

    def run_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the model's outputs (float32 numpy, batch first) for inputs keyed by input name."""
        torch = self._torch
        tensors = {}
        for spec in self.signature.inputs:
            tensor = torch.from_numpy(arrays[spec.name]).to(self._device, non_blocking=True)
            if tensor.is_floating_point():
                tensor = tensor.to(self._dtype)
            tensors[spec.name] = tensor
        with torch.inference_mode():
            output = self._module(**tensors)
        result = output.to(device="cpu", dtype=torch.float32).numpy()
        return {self.signature.outputs[0].name: result}

