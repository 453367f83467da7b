"""The names of the reference models, at the bottom of the layering.

Config validation (`harness.config`), load profiles and sweep plans check a model name without
importing the service: its signatures (`harness.service.registry`) and torch definitions
(`harness.service.models`) are keyed by these names, and a test keeps the three in step.
"""

from __future__ import annotations

__all__ = ["MODEL_NAMES", "DEFAULT_MODEL"]

MODEL_NAMES: tuple[str, ...] = ("ranker-mlp", "text-encoder", "tiny-mlp")
DEFAULT_MODEL = "ranker-mlp"  # what a spec, a load profile and a protocol use when they name none
