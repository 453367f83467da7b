"""Weights: generated from a seed with a manifest; tampered, truncated or mismatched files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ModelIntegrityError
from harness.service import weights


def test_weights_are_generated_once_with_a_manifest_and_reproducible(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 3, tmp_path)
    manifest = json.loads((folder / weights.MANIFEST_FILE).read_text())
    assert manifest["model"] == "tiny-mlp" and manifest["seed"] == 3
    assert manifest["sha256"] == weights.file_sha256(folder / weights.WEIGHTS_FILE)
    assert manifest["size_bytes"] == (folder / weights.WEIGHTS_FILE).stat().st_size
    assert manifest["params"]["net.0.weight"] == [64, 32]
    modified = (folder / weights.WEIGHTS_FILE).stat().st_mtime_ns
    assert weights.ensure_weights("tiny-mlp", 3, tmp_path) == folder
    assert (folder / weights.WEIGHTS_FILE).stat().st_mtime_ns == modified  # cached, not regenerated
    again = weights.generate_weights("tiny-mlp", 3, tmp_path / "other")
    assert again["sha256"] == manifest["sha256"]  # the same seed gives the same bytes


def test_a_flipped_byte_is_refused_by_its_hash(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    path = folder / weights.WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="SHA-256 .* does not match"):
        weights.load_model("tiny-mlp", 0, tmp_path)


def test_a_truncated_file_is_refused_by_its_size(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    path = folder / weights.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        weights.load_model("tiny-mlp", 0, tmp_path)


def test_a_missing_file_and_a_broken_manifest_are_refused(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    (folder / weights.WEIGHTS_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        weights.load_model("tiny-mlp", 0, tmp_path)
    (folder / weights.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="manifest unreadable"):
        weights.load_model("tiny-mlp", 0, tmp_path)


def test_a_manifest_for_another_model_is_refused(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    manifest = json.loads((folder / weights.MANIFEST_FILE).read_text())
    manifest["seed"] = 9
    (folder / weights.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="expected model='tiny-mlp' seed=0"):
        weights.load_model("tiny-mlp", 0, tmp_path)


def _resave(folder: Path, state: dict) -> None:
    """Save a changed state dict with a manifest that matches it, so only the strict load can object."""
    import torch

    path = folder / weights.WEIGHTS_FILE
    torch.save(state, path)
    manifest = json.loads((folder / weights.MANIFEST_FILE).read_text())
    manifest.update(sha256=weights.file_sha256(path), size_bytes=path.stat().st_size)
    (folder / weights.MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize("change", ["extra", "missing", "reshaped"])
def test_strict_load_refuses_extra_missing_and_misshaped_parameters(tmp_path: Path, change: str) -> None:
    import torch

    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    state = weights.load_state_dict(folder / weights.WEIGHTS_FILE)
    if change == "extra":
        state["net.9.weight"] = torch.zeros(2, 2)
    elif change == "missing":
        del state["net.0.bias"]
    else:
        state["net.0.weight"] = torch.zeros(64, 31)
    _resave(folder, state)
    weights.verify_weights(folder, "tiny-mlp", 0)  # the hash is consistent ...
    with pytest.raises(ModelIntegrityError, match="state dict does not match model 'tiny-mlp'"):
        weights.load_model("tiny-mlp", 0, tmp_path)  # ... but the strict load is not


def test_a_non_state_dict_file_is_refused(tmp_path: Path) -> None:
    folder = weights.ensure_weights("tiny-mlp", 0, tmp_path)
    path = folder / weights.WEIGHTS_FILE
    path.write_bytes(b"not a torch file at all" * 10)
    manifest = json.loads((folder / weights.MANIFEST_FILE).read_text())
    manifest.update(sha256=weights.file_sha256(path), size_bytes=path.stat().st_size)
    (folder / weights.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="not a loadable state dict"):
        weights.load_model("tiny-mlp", 0, tmp_path)
