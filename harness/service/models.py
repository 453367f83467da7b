"""The reference models as PyTorch modules, built in code (no download).

This is the only service module that imports torch at module level; it is imported lazily, by the
model worker thread, after the HTTP port is already listening. Each module's ``forward`` takes the
registry's input names as keyword arguments and returns the registry's single output tensor, so
`harness.service.registry` (no torch) and this file describe the same signatures; a test keeps them
in step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from harness.service.registry import get_signature

__all__ = ["RankerMLP", "TextEncoder", "build_model", "model_names"]


class RankerMLP(nn.Module):
    """A ReLU MLP scoring tower: dense features in, one score per head out."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(width_in, width_out))
            if index < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class TextEncoder(nn.Module):
    """A transformer encoder over token ids, mean-pooled into class logits."""

    def __init__(
        self,
        vocab_size: int = 8000,
        seq_len: int = 32,
        d_model: int = 256,
        heads: int = 4,
        layers: int = 4,
        ff_width: int = 1024,
        classes: int = 16,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_width, dropout=0.0, batch_first=True)
        # nested tensors only pay off with padding masks; we never pad, and they warn when disabled implicitly
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.token(input_ids) + self.position
        hidden = self.encoder(hidden)
        return self.head(self.norm(hidden.mean(dim=1)))


# Sizes: on the 2-core development CPU, one torch thread, fp32, batch 32 takes about 42 ms for
# ranker-mlp and about 39 ms for text-encoder; per-request HTTP+JSON cost is ~0.1 ms, so batching
# dominates (ranker-mlp batch 1 takes ~12 ms: memory-bound on its 270 MB of weights).
_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "ranker-mlp": lambda: RankerMLP((512, 4096, 4096, 4096, 4096, 16)),
    "text-encoder": lambda: TextEncoder(),
    "tiny-mlp": lambda: RankerMLP((32, 64, 64, 4)),
}


def model_names() -> tuple[str, ...]:
    """Return the names of the models this module can build."""
    return tuple(_BUILDERS)


def build_model(name: str) -> nn.Module:
    """Return a freshly initialised model (eval mode) for ``name``; raise KeyError for an unknown name.

    Initialisation draws from torch's global generator: seed it (``torch.manual_seed``) first for
    reproducible weights.
    """
    get_signature(name)  # the registry's KeyError names the known models
    if name not in _BUILDERS:
        raise KeyError(f"model {name!r} is in the registry but has no torch definition")
    return _BUILDERS[name]().eval()
