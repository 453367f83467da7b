"""Render a service spec to Kubernetes YAML: the objects in apply order, one file per object.

`render_manifests` returns the objects (dicts); `write_manifests` writes them as
``NN-kind-name.yaml`` so that ``kubectl apply -f DIR`` applies them in order (namespace and accounts
first), each file headed by a comment saying what rendered it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness import __version__
from harness.config import ServiceSpec
from harness.errors import ConfigError
from harness.platforms.kubernetes.loadgen import loadgen_objects
from harness.platforms.kubernetes.manifests import service_objects
from harness.platforms.kubernetes.options import RenderOptions, validate_render_options
from harness.platforms.kubernetes.runner_job import runner_objects

__all__ = ["render_manifests", "manifest_filename", "dump_manifest", "write_manifests"]


def render_manifests(spec: ServiceSpec, options: RenderOptions | None = None) -> list[dict[str, Any]]:
    """Return the spec's Kubernetes objects in apply order (the runner's too when ``options`` ask for it).

    Raises ConfigError naming the field and value when the spec or options cannot be rendered.
    """
    options = options or RenderOptions()
    if spec.target_kind == "deployment":  # a user's server on a cluster is their own Deployment, attached to as it is
        raise ConfigError("target", spec.target_kind, "an existing Deployment is attached to as it is (harness chaos "
                          "run|matrix --platform kubernetes), never rendered; render renders the reference service")
    if spec.target is not None:
        raise ConfigError("target", spec.target_kind, "a command or endpoint target runs on the local platform; "
                          "the Kubernetes platform renders the reference service")
    validate_render_options(options, spec)
    objects = service_objects(spec, options)
    if options.with_runner:
        objects += runner_objects(spec, options) + loadgen_objects(spec, options)
    return objects


def manifest_filename(index: int, obj: dict[str, Any]) -> str:
    """Return the file name of the ``index``-th object: ``NN-kind-name.yaml``, sorting in apply order."""
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def dump_manifest(obj: dict[str, Any]) -> str:
    """Return one object as a YAML document with a header comment (and its note, if it has one)."""
    header = [f"# Rendered by harness {__version__} (harness render --platform kubernetes); edit the spec, not this file."]
    note = obj.get("metadata", {}).get("annotations", {}).get("harness.io/note")
    if note:
        header.append(f"# Note: {note}")
    return "\n".join(header) + "\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)


def write_manifests(objects: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write each object to its own file in ``out_dir`` (created if needed); return the paths in apply order.

    Files from an earlier render that this render does not produce are removed, so the directory
    always holds exactly one render. Raises ConfigError when ``out_dir`` cannot be written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, obj in enumerate(objects):
            path = out / manifest_filename(index, obj)
            path.write_text(dump_manifest(obj), encoding="utf-8")
            paths.append(path)
        keep = {path.name for path in paths}
        for stale in out.glob("[0-9][0-9]-*.yaml"):
            if stale.name not in keep:
                stale.unlink()
    except OSError as exc:
        raise ConfigError("out", str(out), f"cannot write manifests: {exc.strerror or exc}") from exc
    return paths
