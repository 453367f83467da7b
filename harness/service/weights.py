"""Seeded weights on disk: generation, the manifest that pins them, verification and strict loading.

Layout: ``<weights_dir>/<model>-seed<seed>/weights.pt`` (a ``torch.save``d state dict) and
``manifest.json`` beside it (model, seed, SHA-256, size in bytes, parameter shapes, versions). The
manifest is written last and atomically, so it marks a complete generation: no manifest means
"generate"; a manifest whose file does not match means tampering or truncation, which is refused
with `ModelIntegrityError` and never silently regenerated. A file lock keeps concurrent replicas
from generating the same weights twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness import __version__
from harness.errors import ModelIntegrityError

__all__ = [
    "WEIGHTS_FILE",
    "MANIFEST_FILE",
    "weights_folder",
    "file_sha256",
    "generate_weights",
    "ensure_weights",
    "read_manifest",
    "verify_weights",
    "load_state_dict",
    "load_model",
]

WEIGHTS_FILE = "weights.pt"
MANIFEST_FILE = "manifest.json"
_HASH_CHUNK_BYTES = 4 * 2**20


def weights_folder(weights_dir: Path | str, model: str, seed: int) -> Path:
    """Return the folder holding one model's weights for one seed."""
    return Path(weights_dir) / f"{model}-seed{seed}"


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file; raise OSError if it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def generate_weights(model: str, seed: int, weights_dir: Path | str) -> dict[str, Any]:
    """Generate ``model``'s weights from ``seed``, save them with their manifest; return the manifest."""
    import torch

    from harness.service.models import build_model

    folder = weights_folder(weights_dir, model, seed)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_model(model)
    state = module.state_dict()
    weights_path = folder / WEIGHTS_FILE
    _atomic_write(weights_path, lambda handle: torch.save(state, handle))
    manifest = {
        "model": model,
        "seed": seed,
        "file": WEIGHTS_FILE,
        "sha256": file_sha256(weights_path),
        "size_bytes": weights_path.stat().st_size,
        "dtype": "float32",
        "params": {name: list(tensor.shape) for name, tensor in state.items()},
        "harness_version": __version__,
        "torch_version": torch.__version__,
    }
    _atomic_write(folder / MANIFEST_FILE, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))
    return manifest


def ensure_weights(model: str, seed: int, weights_dir: Path | str) -> Path:
    """Return the weights folder for ``model``/``seed``, generating the weights on first use."""
    folder = weights_folder(weights_dir, model, seed)
    if (folder / MANIFEST_FILE).exists():
        return folder
    with _folder_lock(folder):
        if not (folder / MANIFEST_FILE).exists():  # another process may have generated them meanwhile
            generate_weights(model, seed, weights_dir)
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    """Return the manifest of a weights folder; raise ModelIntegrityError if missing or malformed."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelIntegrityError(f"{path}: manifest missing") from None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"{path}: manifest unreadable: {exc}") from exc
    required = ("model", "seed", "file", "sha256", "size_bytes")
    if not isinstance(manifest, dict) or any(key not in manifest for key in required):
        raise ModelIntegrityError(f"{path}: manifest must be an object with {', '.join(required)}")
    return manifest


def verify_weights(folder: Path, model: str, seed: int) -> dict[str, Any]:
    """Check the weights file against its manifest (model, seed, size, SHA-256); return the manifest.

    Raises ModelIntegrityError naming the file and what differs.
    """
    manifest = read_manifest(folder)
    if manifest["model"] != model or manifest["seed"] != seed:
        raise ModelIntegrityError(
            f"{folder / MANIFEST_FILE}: manifest is for model={manifest['model']!r} seed={manifest['seed']!r}, "
            f"expected model={model!r} seed={seed!r}"
        )
    path = folder / str(manifest["file"])
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelIntegrityError(f"{path}: weights file unreadable: {exc.strerror or exc}") from exc
    if size != manifest["size_bytes"]:
        raise ModelIntegrityError(
            f"{path}: size {size} bytes does not match the manifest's {manifest['size_bytes']} bytes (truncated or replaced)"
        )
    digest = file_sha256(path)
    if digest != manifest["sha256"]:
        raise ModelIntegrityError(
            f"{path}: SHA-256 {digest} does not match the manifest's {manifest['sha256']} (tampered or corrupted)"
        )
    return manifest


def load_state_dict(path: Path) -> dict[str, Any]:
    """Return the state dict saved at ``path`` (tensors only); raise ModelIntegrityError if unreadable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        raise ModelIntegrityError(f"{path}: not a loadable state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelIntegrityError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def load_model(model: str, seed: int, weights_dir: Path | str) -> tuple[Any, dict[str, Any]]:
    """Return ``(module, manifest)``: the model with verified weights loaded strictly (eval mode, CPU).

    Generates the weights on first use. Raises ModelIntegrityError for a mismatched, truncated or
    tampered file and for missing, unexpected or mis-shaped parameters.
    """
    from harness.service.models import build_model

    folder = ensure_weights(model, seed, weights_dir)
    manifest = verify_weights(folder, model, seed)
    path = folder / str(manifest["file"])
    import torch

    state = load_state_dict(path)
    with torch.device("meta"):  # no throw-away random init: the loaded tensors are assigned in place
        module = build_model(model)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelIntegrityError(f"{path}: state dict does not match model {model!r}: {exc}") from exc
    return module.eval(), manifest
