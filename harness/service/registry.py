"""Names of the reference models, importable without torch (config validation uses them)."""

from __future__ import annotations

__all__ = ["MODEL_NAMES"]

# The model definitions live in harness.service.models; this tuple must list exactly those names
# (a test guards it) so that config validation never has to import torch.
MODEL_NAMES = ("ranker-mlp", "text-encoder")
