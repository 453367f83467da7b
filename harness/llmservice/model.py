"""The reference decoder: a small decoder-only transformer made in code from a seed, with a paged KV cache.

`TinyDecoder` is pre-norm (attention, then an MLP, each with a residual), sinusoidal positions (no
table, so the context length is a serving setting, not a weight) and a byte vocabulary
(`harness.llmservice.tokenizer`). Its KV cache (`KVCache`) is preallocated as vLLM's is: a pool of
fixed-size blocks per layer, ``num_blocks * block_size`` tokens in all; a sequence holds a list of
block ids (its block table) and `TinyDecoder.forward` writes the new tokens' keys and values into
their slots and reads every earlier one from the blocks.

Attention over a chunk of ``C`` new tokens and ``T`` cached ones holds ``heads x C x T`` scores: a
whole long prompt in one chunk (no chunked prefill) grows with the square of its length, which is
what exhausts a replica's memory (`harness.llmservice.scheduler` bounds the chunk).

Weights are generated from a seed and kept with a manifest of their SHA-256
(`harness.service.weights`: the reference models' own layout and checks), verified on every load
and loaded strictly; a tampered or truncated file is refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness import __version__
from harness.errors import ModelIntegrityError
from harness.llmservice import MODEL_NAME
from harness.llmservice.tokenizer import VOCAB_SIZE
from harness.service.weights import MANIFEST_FILE, WEIGHTS_FILE, file_sha256, load_state_dict, verify_weights, weights_folder

__all__ = ["MODEL_NAME", "DIMENSIONS", "TinyDecoder", "KVCache", "generate_weights", "load_decoder"]

# on the 2-core development CPU (one torch thread, fp32) a decode step of 16 sequences takes ~1.5 ms
DIMENSIONS = {"d_model": 128, "heads": 4, "layers": 2, "ff_width": 512}


class KVCache:
    """Preallocated keys and values: ``[layers, num_blocks, block_size, heads, head_dim]`` each."""

    def __init__(self, layers: int, num_blocks: int, block_size: int, heads: int, head_dim: int) -> None:
        shape = (layers, num_blocks, block_size, heads, head_dim)
        self.block_size = block_size
        self.keys = torch.zeros(shape)  # zeros touch every page: the cache's memory is resident from the start
        self.values = torch.zeros(shape)

    @property
    def nbytes(self) -> int:
        return self.keys.element_size() * self.keys.nelement() * 2


def sinusoid(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Return sinusoidal position encodings ``[..., width]`` of integer ``positions``."""
    half = width // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _Block(nn.Module):
    def __init__(self, d_model: int, heads: int, ff_width: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.up = nn.Linear(d_model, ff_width)
        self.down = nn.Linear(ff_width, d_model)

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache, slots: tuple[torch.Tensor, torch.Tensor],
                valid: torch.Tensor, tables: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, chunk, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, chunk, 3, self.heads, self.head_dim).unbind(2)
        blocks, offsets = slots
        cache.keys[layer][blocks[valid], offsets[valid]] = k[valid]
        cache.values[layer][blocks[valid], offsets[valid]] = v[valid]
        keys = cache.keys[layer][tables].flatten(1, 2)  # [batch, T, heads, head_dim]
        values = cache.values[layer][tables].flatten(1, 2)
        scores = torch.einsum("bchd,bthd->bhct", q, keys) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        attended = torch.einsum("bhct,bthd->bchd", scores.softmax(-1), values).reshape(batch, chunk, width)
        x = x + self.out(attended)
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))


class TinyDecoder(nn.Module):
    """A decoder-only transformer over bytes (see the module docstring)."""

    def __init__(self, d_model: int, heads: int, layers: int, ff_width: int, vocab_size: int = VOCAB_SIZE) -> None:
        super().__init__()
        self.d_model, self.heads = d_model, heads
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, heads, ff_width) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def new_cache(self, num_blocks: int, block_size: int) -> KVCache:
        """Return an empty KV cache of ``num_blocks`` blocks of ``block_size`` tokens for this model."""
        return KVCache(len(self.blocks), num_blocks, block_size, self.heads, self.d_model // self.heads)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, counts: torch.Tensor, tables: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        """Run ``tokens`` ``[B, C]`` (row b's first ``counts[b]`` are real, at ``positions``) through the model,
        writing their keys and values into ``cache`` through the block ``tables`` ``[B, M]``; return the
        logits ``[B, vocab]`` of each row's last real token."""
        size = cache.block_size
        chunk = tokens.shape[1]
        valid = torch.arange(chunk).unsqueeze(0) < counts.unsqueeze(1)
        blocks = torch.gather(tables, 1, torch.div(positions, size, rounding_mode="floor"))
        slots = (blocks, positions % size)
        key_positions = torch.arange(tables.shape[1] * size)
        allowed = key_positions.view(1, 1, -1) <= positions.unsqueeze(-1)  # causal: [B, C, T]
        x = self.embed(tokens) + sinusoid(positions, self.d_model)
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache, slots, valid, tables, allowed)
        last = x[torch.arange(x.shape[0]), counts - 1]
        return self.head(self.norm(last))


def _atomic_bytes(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
    tmp.replace(path)


def generate_weights(seed: int, weights_dir: Path | str) -> dict[str, Any]:
    """Generate the decoder's weights from ``seed`` into ``weights_dir``; return the manifest written beside them."""
    import json

    folder = weights_folder(weights_dir, MODEL_NAME, seed)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = TinyDecoder(**DIMENSIONS).state_dict()
    _atomic_bytes(folder / WEIGHTS_FILE, lambda handle: torch.save(state, handle))
    manifest = {"model": MODEL_NAME, "seed": seed, "file": WEIGHTS_FILE, "sha256": file_sha256(folder / WEIGHTS_FILE),
                "size_bytes": (folder / WEIGHTS_FILE).stat().st_size, "dtype": "float32", "dimensions": DIMENSIONS,
                "params": {name: list(t.shape) for name, t in state.items()}, "harness_version": __version__,
                "torch_version": torch.__version__}
    _atomic_bytes(folder / MANIFEST_FILE, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))
    return manifest


def load_decoder(seed: int, weights_dir: Path | str) -> tuple[TinyDecoder, dict[str, Any]]:
    """Return ``(model, manifest)``: the decoder with verified weights loaded strictly (generated on first use).

    Raises ModelIntegrityError for a tampered, truncated or mismatched weights file.
    """
    import fcntl

    folder = weights_folder(weights_dir, MODEL_NAME, seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:  # replicas starting together generate the weights once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / MANIFEST_FILE).exists():
            generate_weights(seed, weights_dir)
    manifest = verify_weights(folder, MODEL_NAME, seed)
    state = load_state_dict(folder / str(manifest["file"]))
    model = TinyDecoder(**DIMENSIONS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelIntegrityError(f"{folder / WEIGHTS_FILE}: state dict does not match {MODEL_NAME}: {exc}") from exc
    return model.eval(), manifest
